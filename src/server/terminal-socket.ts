/**
 * Terminals over WebSocket: `GET /v1/sandboxes/:id/pty?cols=&rows=[&cmd=...]` upgrades to the
 * `sandstorm-pty.v1` protocol (browsers, the CLI). Everything that can fail before the command runs
 * (the key, the query, the sandbox's state, the start itself) answers an HTTP error before the
 * upgrade; after it, binary messages are the terminal's bytes both ways, text messages are JSON
 * (server: start, exit, error; client: resize). A socket that closes while the command runs hangs
 * it up: SIGHUP to its whole tree, then SIGKILL after a grace, so that nothing is left behind.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type RawData, type WebSocket } from 'ws'
import type { AgentApi } from '../agent/index.js'
import {
  defaultShellArgv,
  defaultTerm,
  httpStatusOf,
  ptyClientMessage,
  ptyKeyProtocolPrefix,
  ptyProtocol,
  ptyQuery,
  SandstormError,
  type Logger,
  type PtyServerMessage,
} from '../shared/index.js'
import type { SandboxService } from './sandbox-service.js'
import { parseInput } from './validation.js'
import { presentedApiKey } from './api-keys.js'
import { refuseUpgrade } from './upgrade-refusal.js'
import { shownMessage } from './http-errors.js'

/** What the terminal route needs. */
export interface TerminalSocketOptions {
  agent: AgentApi
  sandboxes: SandboxService
  checkApiKey(key: string): boolean
  logger: Logger
  /** Every session hangs up when it fires. */
  shutdownSignal: AbortSignal
  /** How long a hung-up command has to end before its tree is killed. @default 2000 */
  hangupGraceMs?: number
  /** A ping this often; a client that did not answer the previous one is cut off. @default 30000 */
  heartbeatMs?: number
}

/** The terminal route on the edge. */
export interface TerminalSockets {
  /** Answers an upgrade of GET /v1/sandboxes/:id/pty: a session, or an HTTP error and a closed socket. */
  serve(req: IncomingMessage, socket: Duplex, head: Buffer, sandboxId: string): void
}

const terminalPath = /^\/v1\/sandboxes\/([^/]+)\/pty$/

/** The sandbox of a terminal request's path, or undefined for another path. */
export function terminalTargetOf(path: string): string | undefined {
  const match = terminalPath.exec(path)
  return match ? decodeURIComponent(match[1]!) : undefined
}

/** Input bytes held for the agent before the socket stops reading the client. */
const inputHighWater = 1 << 20
/** What one queued input message costs beyond its bytes (its promise, closures and slot in the chain). */
const queuedMessageBytes = 512
/** Output handed to the socket before the follow waits for the client to take it. */
const outputHighWater = 1 << 20

/** Creates the route's WebSocket endpoint. */
export function createTerminalSockets(options: TerminalSocketOptions): TerminalSockets {
  const { agent, sandboxes, logger, shutdownSignal } = options
  const graceMs = options.hangupGraceMs ?? 2000
  const heartbeatMs = options.heartbeatMs ?? 30_000
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: inputHighWater,
    perMessageDeflate: false,
    // Answer with the protocol alone: the key protocol is a credential, never echoed.
    handleProtocols: (offered) => (offered.has(ptyProtocol) ? ptyProtocol : false),
  })

  const refuse = (socket: Duplex, err: SandstormError): void => {
    // What the client may not be shown is logged by refuseUpgrade.
    if (err.expose && httpStatusOf[err.code] >= 500) logger.warn({ err: err.cause ?? err, code: err.code }, `terminal refused: ${err.message}`)
    refuseUpgrade(socket, err, logger, { hiddenMessage: 'the terminal could not be started; the server logged why' })
  }

  /** Ends a command and what it started: SIGHUP (as a terminal hang-up), then SIGKILL to whatever is left. */
  const hangUp = async (id: string, pid: number, grace: number): Promise<void> => {
    try {
      await agent.signal(id, pid, 'SIGHUP')
      if (grace > 0) {
        let timer: NodeJS.Timeout | undefined
        const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, grace)))
        await Promise.race([agent.wait(id, pid).catch(() => undefined), waited])
        clearTimeout(timer)
      }
      // Also after the command itself ended: children that ignored the hang-up are still its tree.
      await agent.signal(id, pid, 'SIGKILL')
    } catch (err) {
      // The sandbox (or the process) is gone already: nothing is left to end.
      logger.debug({ sandboxId: id, pid, err }, 'terminal hang-up found nothing to end')
    }
  }

  function serve(req: IncomingMessage, socket: Duplex, head: Buffer, sandboxId: string): void {
    socket.on('error', () => undefined)
    void start(req, socket, head, sandboxId).catch((err: unknown) => refuse(socket, SandstormError.from(err)))
  }

  async function start(req: IncomingMessage, socket: Duplex, head: Buffer, id: string): Promise<void> {
    const offered = (req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter((p) => p !== '')
    checkKey(req, offered, options.checkApiKey)
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      throw new SandstormError('invalid_argument', `Upgrade: expected websocket, got ${JSON.stringify(req.headers.upgrade ?? '')}`)
    }
    // Checked here too (ws checks it again at the upgrade), so that a bad handshake starts nothing.
    if (!/^[A-Za-z0-9+/]{22}==$/.test(req.headers['sec-websocket-key'] ?? '') || !['8', '13'].includes(req.headers['sec-websocket-version'] ?? '')) {
      throw new SandstormError('invalid_argument', 'Sec-WebSocket-Key and Sec-WebSocket-Version: expected a WebSocket handshake (RFC 6455)')
    }
    if (offered.length > 0 && !offered.includes(ptyProtocol)) {
      throw new SandstormError('invalid_argument', `Sec-WebSocket-Protocol: expected ${ptyProtocol}, got ${JSON.stringify(offered.filter((p) => !p.startsWith(ptyKeyProtocolPrefix)).join(', '))}`)
    }
    const query = parseInput(ptyQuery, queryObject(new URL(req.url ?? '/', 'http://edge').searchParams))
    const record = sandboxes.requireStarted(id)
    if (record.state !== 'running') {
      const what = record.state === 'paused' ? 'is paused: resume it first' : `is ${record.state}: expected a running sandbox`
      throw new SandstormError('failed_precondition', `sandbox "${id}" ${what}`)
    }
    // The start follows the client and the server only until it is answered.
    const starting = new AbortController()
    const cancel = (): void => starting.abort(new SandstormError('canceled', 'the client closed the connection'))
    socket.once('close', cancel)
    const onShutdown = (): void => starting.abort(new SandstormError('unavailable', 'the server is shutting down'))
    shutdownSignal.addEventListener('abort', onShutdown, { once: true })
    let pid: number
    try {
      ;({ pid } = await agent.exec(
        id,
        {
          argv: query.cmd ?? defaultShellArgv,
          env: envOf(query.env, query.term),
          ...(query.cwd !== undefined ? { cwd: query.cwd } : {}),
          ...(query.user !== undefined ? { user: query.user } : {}),
          pty: { cols: query.cols, rows: query.rows },
          keepStdin: true,
        },
        { signal: starting.signal },
      ))
    } finally {
      socket.off('close', cancel)
      shutdownSignal.removeEventListener('abort', onShutdown)
    }
    let session: WebSocket | undefined
    if (!socket.destroyed && !shutdownSignal.aborted) {
      // Synchronous when the handshake is good; a bad one is answered by ws and calls nothing.
      wss.handleUpgrade(req, socket, head, (ws) => (session = ws))
    }
    if (!session) {
      void hangUp(id, pid, 0)
      socket.destroy()
      return
    }
    logger.info({ sandboxId: id, pid, cols: query.cols, rows: query.rows }, 'terminal opened')
    run(session, id, pid)
  }

  function run(ws: WebSocket, id: string, pid: number): void {
    const following = new AbortController()
    let ended = false
    let closed = false
    const sendJson = (message: PtyServerMessage): void => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(message))
    }
    /** What the client may be told of an error, in the terminal's words where it may not see the error's own. */
    const shown = (err: SandstormError): string => shownMessage(err, logger, { sandboxId: id, pid }, 'the terminal failed; the server logged why')
    const fail = (err: SandstormError): void => {
      sendJson({ type: 'error', code: err.code, message: shown(err) })
      ws.close(1011, err.code)
    }

    sendJson({ type: 'start', pid })

    // Output, in order, as binary messages; then the exit and a normal close.
    void (async () => {
      try {
        for await (const event of agent.follow(id, pid, { signal: following.signal })) {
          if (event.type === 'stdout' || event.type === 'stderr') {
            if (ws.readyState !== ws.OPEN) continue
            const chunk = Buffer.from(event.data, 'base64')
            // Past the high water mark, wait until this chunk is out: a slow client slows the follow.
            if (ws.bufferedAmount > outputHighWater) await new Promise<void>((resolve) => ws.send(chunk, () => resolve()))
            else ws.send(chunk)
          } else if (event.type === 'end') {
            ended = true
            if (sandboxes.destroying(id) || !isRunning(id)) {
              fail(new SandstormError('unavailable', `sandbox "${id}" stopped while its terminal was open`))
            } else {
              sendJson({ type: 'exit', exitCode: event.result.exitCode, ...(event.result.signal !== null ? { signal: event.result.signal } : {}) })
              ws.close(1000)
            }
            logger.info({ sandboxId: id, pid, exitCode: event.result.exitCode }, 'terminal ended')
            return
          }
        }
        if (!closed) fail(new SandstormError('unavailable', `the output of process ${pid} ended before the process did`))
      } catch (err) {
        if (closed) return
        const error = SandstormError.from(err)
        logger.warn({ sandboxId: id, pid, err }, 'terminal output failed')
        fail(isRunning(id) ? error : new SandstormError('unavailable', `sandbox "${id}" stopped while its terminal was open`, { cause: err }))
      }
    })()

    // An answer to a message costs the server about 30 times what the message cost the client: one
    // that sends bad messages and leaves the answers unread would fill the server's memory.
    const unread = (): boolean => ws.bufferedAmount > outputHighWater

    // Input in the order it came; the client is not read while too much waits for the agent. Each
    // message counts what queueing it costs too: tiny frames and resizes filled memory uncounted.
    let pending = 0
    let chain: Promise<unknown> = Promise.resolve()
    const enqueue = (payload: number, work: () => Promise<void>): void => {
      const bytes = payload + queuedMessageBytes
      pending += bytes
      if (pending > inputHighWater) ws.pause()
      chain = chain.then(work).then(
        () => undefined,
        (err: unknown) => {
          // Input after the end, or to a sandbox that went: the output side reports the end.
          if (ended || closed) return
          const error = SandstormError.from(err)
          if (unread()) return void logger.debug({ sandboxId: id, pid, err }, 'terminal input failed; the client reads nothing, so it is not told')
          sendJson({ type: 'error', code: error.code, message: shown(error) })
        },
      ).finally(() => {
        pending -= bytes
        if (pending <= inputHighWater && ws.isPaused) ws.resume()
      })
    }
    ws.on('message', (data: RawData, isBinary: boolean) => {
      const bytes = toBytes(data)
      if (isBinary) {
        if (bytes.byteLength > 0) enqueue(bytes.byteLength, () => agent.writeStdin(id, pid, bytes, false))
        return
      }
      let message
      try {
        message = parseInput(ptyClientMessage, JSON.parse(bytes.toString('utf8')) as unknown)
      } catch (err) {
        if (ws.readyState !== ws.OPEN) return
        if (unread()) {
          logger.info({ sandboxId: id, pid }, 'terminal closed: its client sends bad messages and reads none of the answers')
          return void ws.close(1008, 'bad messages, answers unread')
        }
        const error = err instanceof SandstormError ? err : new SandstormError('invalid_argument', `message: expected JSON such as {"type":"resize","cols":80,"rows":24}, got ${JSON.stringify(bytes.toString('utf8').slice(0, 80))}`)
        sendJson({ type: 'error', code: error.code, message: error.message })
        return
      }
      const size = { cols: message.cols, rows: message.rows }
      enqueue(0, () => agent.resizePty(id, pid, size))
    })

    // A client that stops answering pings is gone (a laptop closed, a NAT that forgot it).
    let alive = true
    ws.on('pong', () => (alive = true))
    const heartbeat = setInterval(() => {
      if (!alive) return ws.terminate()
      alive = false
      ws.ping()
    }, heartbeatMs)
    heartbeat.unref()

    const onShutdown = (): void => {
      // The server's sockets close only after this: the command is ended before the agent goes.
      void hangUp(id, pid, 0).finally(() => ws.close(1001, 'server shutting down'))
    }
    shutdownSignal.addEventListener('abort', onShutdown, { once: true })
    ws.on('error', (err) => logger.debug({ sandboxId: id, pid, err }, 'terminal socket error'))
    ws.on('close', () => {
      closed = true
      clearInterval(heartbeat)
      shutdownSignal.removeEventListener('abort', onShutdown)
      following.abort()
      if (!ended && !shutdownSignal.aborted) {
        logger.info({ sandboxId: id, pid }, 'terminal closed by the client while its command ran: hanging up')
        void hangUp(id, pid, graceMs)
      }
    })
  }

  const isRunning = (id: string): boolean => {
    try {
      return sandboxes.requireStarted(id).state === 'running'
    } catch {
      return false
    }
  }

  return { serve }
}

/** The API key from the Authorization or X-API-Key header, else from a `sandstorm-key.` subprotocol. */
function checkKey(req: IncomingMessage, offered: string[], check: (key: string) => boolean): void {
  const fromProtocol = offered.find((p) => p.startsWith(ptyKeyProtocolPrefix))
  const key = presentedApiKey(req.headers) ?? (fromProtocol && Buffer.from(fromProtocol.slice(ptyKeyProtocolPrefix.length), 'base64url').toString('utf8'))
  if (!key || !check(key)) {
    throw new SandstormError(
      'unauthenticated',
      `${key ? 'wrong' : 'missing'} API key: expected "Authorization: Bearer <key>", or the subprotocol "${ptyKeyProtocolPrefix}<base64url of the key>" beside "${ptyProtocol}"`,
    )
  }
}

/** The query as the schema reads it: `cmd` as the list it repeats into, other keys once. */
function queryObject(params: URLSearchParams): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const key of new Set(params.keys())) out[key] = key === 'cmd' || key === 'env' ? params.getAll(key) : params.get(key)
  return out
}

/** The command's environment: the `env` pairs, and TERM (`term`, else an `env` TERM, else the default). */
function envOf(pairs: string[] | undefined, term: string | undefined): Record<string, string> {
  const env: Record<string, string> = {}
  for (const pair of pairs ?? []) {
    const at = pair.indexOf('=')
    env[pair.slice(0, at)] = pair.slice(at + 1)
  }
  return { ...env, TERM: term ?? env.TERM ?? defaultTerm }
}

function toBytes(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data
  if (Array.isArray(data)) return Buffer.concat(data)
  return Buffer.from(data)
}
