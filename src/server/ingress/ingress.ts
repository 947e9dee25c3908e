/**
 * Ingress: HTTP/1.1 requests (streaming both ways) and upgrades (WebSocket) to a sandbox's port,
 * through the server's own listener. The bytes reach the sandbox over its agent (a TCP connection
 * from the agent's host, or a Data stream of the fleet link), so sandbox hosts open no port.
 * A private sandbox (allowPublicTraffic false) takes its traffic token or an API key.
 */
import { request, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import type { AgentApi } from '../../agent/index.js'
import { SandstormError, type Logger } from '../../shared/index.js'
import type { AccessTokens } from '../access-tokens.js'
import type { SandboxCatalog } from '../catalog.js'
import { refuseUpgrade } from '../upgrade-refusal.js'
import { shownMessage } from '../http-errors.js'
import { withRequestId } from '../request-context.js'
import { relayHead } from '../../shared/http-relay.js'
import { backHeaders, forwardHeaders, keyLinesOf, trafficTokenHeader, type Admitted } from './ingress-headers.js'
import type { IngressTarget } from './ingress-target.js'
import { ingressStatusOf } from './ingress-status.js'
import { createRelayIdleWatch } from './relay-idle.js'
import { SandboxPortPool } from './sandbox-port-pool.js'
import { releaseOnClose, type ReleaseSlot, type UpstreamBudget } from './upstream-budget.js'
import { relayUpgrade } from './upgrade-relay.js'

/** What ingress needs. */
export interface IngressOptions {
  agent: AgentApi
  catalog: SandboxCatalog
  /** Traffic access tokens of private sandboxes. */
  trafficTokens: AccessTokens
  checkApiKey(key: string): boolean
  logger: Logger
  /** Slots for connections into sandboxes: a request past it answers 503. */
  budget: UpstreamBudget
  /** A request in flight, or an upgraded connection, that carries no byte either way for this long is ended. @default 600_000 (10 minutes) */
  idleMs?: number
  /** How long a refused connect is tried again (a server in the sandbox still starting). @default 3000 */
  connectRetryMs?: number
  /** Keep connections into sandboxes alive between requests: when the agent's connections are sockets (it runs in this process). @default false */
  keepAlive?: boolean
  /** Resumes a paused sandbox whose policy lets traffic wake it (autoResume); true when it runs now. @default none: a paused sandbox's ports answer 502 */
  wake?(sandboxId: string, options?: { signal?: AbortSignal }): Promise<boolean>
}

/** Serves requests already known to be for a sandbox port. */
export interface Ingress {
  serve(req: IncomingMessage, res: ServerResponse, target: IngressTarget): void
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: IngressTarget): void
  /** Closes the kept-alive connections into sandboxes and stops watching for idle ones. */
  close(): void
}

/**
 * A JSON error for a client of ingress (often a browser or curl): the message only where the error
 * may show it (an errno from a connect may name a host path), else a generic one with an id that
 * the log line of the whole error carries too.
 */
function fail(res: ServerResponse, log: Logger, err: SandstormError, status = ingressStatusOf(err), close = false): void {
  if (res.headersSent) return void res.destroy()
  const message = withRequestId(() => shownMessage(err, log, { status }))
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...(close ? { connection: 'close' } : {}) }).end(JSON.stringify({ code: err.code, message }))
}

/** Creates the ingress. */
export function createIngress(options: IngressOptions): Ingress {
  const log = options.logger.child({ component: 'ingress' })
  const retryMs = options.connectRetryMs ?? 3000
  const idleMs = options.idleMs ?? 600_000
  const idle = createRelayIdleWatch({ idleMs })

  /** The sandbox a target names, after the access check; throws what the client is told. */
  const admit = (req: IncomingMessage, target: IngressTarget): Admitted => {
    // The sandbox first: a request for none costs no hash and no lookup of its keys.
    const record = options.catalog.get(target.sandboxId)
    if (!record) throw new SandstormError('not_found', `sandbox "${target.sandboxId}" not found`)
    // An API key lets its holder do anything on this server: the code in the sandbox must never see
    // one, whether it was needed here (a private sandbox) or sent along to a public one.
    const keyAt = new Set<number>()
    for (const line of keyLinesOf(req)) if (options.checkApiKey(line.key)) keyAt.add(line.at)
    if (record.network === 'none') throw new SandstormError('failed_precondition', `sandbox "${target.sandboxId}" was created with network "none": its ports cannot be reached`)
    if (!record.network.allowPublicTraffic) {
      const token = req.headers[trafficTokenHeader]
      const tokenOk = typeof token === 'string' && options.trafficTokens.verify(target.sandboxId, token)
      if (!tokenOk && keyAt.size === 0) {
        throw new SandstormError('permission_denied', `sandbox "${target.sandboxId}" is private: expected its traffic token in ${trafficTokenHeader}, or an API key`)
      }
    }
    // A paused sandbox with autoResume is woken by its traffic, after the access check above.
    const wake = record.state === 'paused' && record.lifecycle?.autoResume === true && options.wake !== undefined
    if (record.state !== 'running' && !wake) throw new SandstormError('unavailable', `sandbox "${target.sandboxId}" is ${record.state}: its ports answer once it runs`)
    const mask = record.network.maskRequestHost?.replace('${PORT}', String(target.port))
    return { maskHost: mask, wake, keyAt }
  }

  /** Resumes the sandbox when admit said so; throws `unavailable` when it does not run after. */
  const woken = async (target: IngressTarget, signal: AbortSignal): Promise<void> => {
    if (!(await options.wake!(target.sandboxId, { signal }))) throw new SandstormError('unavailable', `sandbox "${target.sandboxId}" is not running: its ports answer once it runs`)
  }

  /** A connection to the target, tried again while nothing listens yet. */
  const dial = async (target: IngressTarget, signal: AbortSignal): Promise<Duplex> => {
    const deadline = Date.now() + retryMs
    for (let waitMs = 25; ; waitMs = Math.min(waitMs * 2, 400)) {
      try {
        return await options.agent.connect(target.sandboxId, target.port, { signal })
      } catch (err) {
        const e = SandstormError.from(err)
        if (e.code !== 'unavailable' || Date.now() + waitMs > deadline || signal.aborted) {
          if (e.code === 'unavailable') {
            throw new SandstormError('unavailable', `nothing listens on port ${target.port} in sandbox "${target.sandboxId}" (tried for ${retryMs / 1000} s): start a server on 0.0.0.0:${target.port} there`, { cause: err })
          }
          throw e
        }
        await sleep(waitMs, undefined, { signal }).catch(() => undefined)
      }
    }
  }

  /** A signal that fires when the client goes away, and a way to stop listening for that. */
  const clientGone = (req: IncomingMessage, socket: Duplex): { signal: AbortSignal; done(): void } => {
    const ac = new AbortController()
    const gone = (): void => ac.abort(new SandstormError('canceled', 'the client went away'))
    socket.once('close', gone)
    req.once('aborted', gone)
    return {
      signal: ac.signal,
      done() {
        socket.off('close', gone)
        req.off('aborted', gone)
      },
    }
  }

  /**
   * Connections into sandboxes kept alive between requests, per sandbox port (a new one costs a
   * handshake through the sandbox's veth and its server's accept); idle ones close after 2 s.
   * Only for connections that are sockets (the agent in this process): a fleet agent's are streams
   * of its link, opened per request.
   */
  const pool = options.keepAlive ? new SandboxPortPool((target) => connect(target, AbortSignal.timeout(retryMs + 1000))) : undefined

  /** The slot of each connection into a sandbox, for a kept-alive one closed to make room: its slot is freed at once, not when it has closed. */
  const slots = new WeakMap<Duplex, ReleaseSlot>()
  const reclaim = (sandboxId: string | undefined): boolean => {
    const connection = pool?.idleConnection(sandboxId)
    if (!connection) return false
    slots.get(connection)?.()
    connection.destroy()
    return true
  }

  /** A connection to the target that holds a slot of the budget until it closes: past the budget, `resource_exhausted` (503). */
  async function connect(target: IngressTarget, signal: AbortSignal): Promise<Duplex> {
    const release = options.budget.take(target.sandboxId, reclaim)
    try {
      const upstream = await dial(target, signal)
      slots.set(upstream, release)
      releaseOnClose(upstream, release)
      return upstream
    } catch (err) {
      release()
      throw err
    }
  }

  /** What a relay that idled is told: nothing went either way for idleMs. */
  const idledError = (target: IngressTarget): SandstormError =>
    new SandstormError('deadline_exceeded', `nothing went between the client and port ${target.port} of sandbox "${target.sandboxId}" for ${idleMs / 1000} s: the request was ended`)

  /** Sends the request to the sandbox; a kept-alive connection the sandbox had closed is replaced once, for a request without a body. */
  const forward = (req: IncomingMessage, res: ServerResponse, target: IngressTarget, admitted: Admitted, upstream: Duplex | undefined, retried = false): void => {
    const at = { sandboxId: target.sandboxId, port: target.port }
    const headers = forwardHeaders(req, admitted, false) as unknown as Record<string, string>
    const outgoing = upstream
      ? request({ method: req.method, path: req.url, headers, setHost: false, createConnection: () => upstream as never })
      : request({ method: req.method, path: req.url, headers, setHost: false, agent: pool, host: target.sandboxId, port: target.port })
    // Idle both ways: a 504 where nothing was answered yet (and the client's connection closes
    // after it), else both connections are cut.
    let idled = false
    const unwatch = idle.watch(req.socket, () => {
      idled = true
      log.info({ ...at, idleMs }, 'ingress request idle: ending it')
      fail(res, log.child(at), idledError(target), undefined, true)
      outgoing.destroy()
    })
    res.once('close', unwatch)
    outgoing.on('response', (answer) => {
      answer.on('error', () => res.destroy())
      if (!relayHead(res, answer, backHeaders(answer.rawHeaders, target), answer.statusMessage)) {
        answer.destroy()
        outgoing.destroy()
        return fail(res, log.child(at), new SandstormError('unavailable', `the server on port ${target.port} in sandbox "${target.sandboxId}" answered with a status line or headers that cannot be sent on (status ${answer.statusCode})`))
      }
      answer.pipe(res)
    })
    outgoing.on('error', (err: NodeJS.ErrnoException) => {
      if (idled) return
      const bodiless = req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined
      // Only a request that got no answer at all is sent again: one answered (in part, to a slow client) is not.
      if (!retried && outgoing.reusedSocket && bodiless && !res.headersSent && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
        unwatch()
        return forward(req, res, target, admitted, undefined, true)
      }
      if (err instanceof SandstormError) return fail(res, log.child(at), err)
      log.debug({ ...at, err }, 'ingress request failed')
      fail(res, log.child(at), new SandstormError('unavailable', `the server on port ${target.port} in sandbox "${target.sandboxId}" closed the connection without an answer`))
    })
    if (upstream) res.on('close', () => upstream.destroy())
    // A client that goes away mid-answer takes the kept-alive connection with it: the server in the
    // sandbox sees the close (the code interpreter interrupts its run on it), and a connection with
    // an answer left unread never goes back to the pool.
    else res.on('close', () => res.writableFinished || outgoing.destroy())
    req.pipe(outgoing)
  }

  return {
    serve(req, res, target) {
      const at = { sandboxId: target.sandboxId, port: target.port }
      let admitted: Admitted
      try {
        admitted = admit(req, target)
      } catch (err) {
        // A sandbox that does not run (paused, stopped) answers 502, as E2B's proxy does.
        return fail(res, log.child(at), SandstormError.from(err))
      }
      if (pool && !admitted.wake) return forward(req, res, target, admitted, undefined)
      const gone = clientGone(req, req.socket)
      const ready = admitted.wake ? woken(target, gone.signal) : Promise.resolve()
      if (pool) {
        return void ready.then(
          () => {
            gone.done()
            forward(req, res, target, admitted, undefined)
          },
          (err: unknown) => {
            gone.done()
            fail(res, log.child(at), SandstormError.from(err))
          },
        )
      }
      ready.then(() => connect(target, gone.signal)).then(
        (upstream) => {
          gone.done()
          // A client gone while its connection was made: its close, already past, would never end it.
          if (gone.signal.aborted) return void upstream.destroy()
          forward(req, res, target, admitted, upstream)
        },
        (err: unknown) => {
          gone.done()
          const e = SandstormError.from(err)
          if (e.code !== 'unavailable' && e.code !== 'resource_exhausted' && !gone.signal.aborted) log.warn({ ...at, err }, 'ingress connect failed')
          fail(res, log.child(at), e)
        },
      )
    },

    close() {
      pool?.destroy()
      idle.close()
    },

    upgrade(req, socket, head, target) {
      const at = { sandboxId: target.sandboxId, port: target.port }
      const refuse = (err: SandstormError, status = ingressStatusOf(err)): void => refuseUpgrade(socket, err, log, { status })
      socket.on('error', () => undefined)
      let admitted: Admitted
      try {
        admitted = admit(req, target)
      } catch (err) {
        return refuse(SandstormError.from(err))
      }
      const gone = clientGone(req, socket)
      const ready = admitted.wake ? woken(target, gone.signal) : Promise.resolve()
      ready.then(() => connect(target, gone.signal)).then(
        (upstream) => {
          gone.done()
          if (gone.signal.aborted) return void upstream.destroy()
          // Idle both ways, before the sandbox's answer or after the switch: both connections are cut.
          const unwatch = idle.watch(req.socket, () => {
            log.info({ ...at, idleMs }, 'ingress upgrade idle: ending it')
            socket.destroy()
            upstream.destroy()
          })
          socket.once('close', unwatch)
          relayUpgrade({
            req,
            socket,
            head,
            upstream,
            headers: forwardHeaders(req, admitted, true),
            backHeaders: (raw) => backHeaders(raw, target),
            refuse: (why) => refuse(new SandstormError('unavailable', `the server on port ${target.port} in sandbox "${target.sandboxId}" ${why}`)),
          })
        },
        (err: unknown) => {
          gone.done()
          refuse(SandstormError.from(err))
        },
      )
    },
  }
}
