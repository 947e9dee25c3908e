/** `sandstorm agent`: a local agent that dials the server and keeps the link up, reconnecting with backoff. */
import { once } from 'node:events'
import { join } from 'node:path'
import type * as grpc from '@grpc/grpc-js'
import { loadAgentLink } from '../proto/index.js'
import type { AgentMessage, DataFrame, RequestMessage, ServerMessage, WireError } from '../proto/index.js'
import { SandstormError, silentLogger } from '../shared/index.js'
import type { Logger } from '../shared/index.js'
import type { AgentApi } from './agent-api.js'
import { hostMetrics } from './host-metrics.js'
import { createLocalAgent } from './local-agent.js'
import { startCommand, unaryHandlers } from './remote-handlers.js'
import type { CommandReport } from './remote-handlers.js'
import { linkTarget, loadLinkIdentity } from './remote-link.js'

/** Options of runAgent. */
export interface RemoteAgentOptions {
  /** Where the server listens for agents: `host:port`. */
  serverUrl: string
  /** The join token `sandstorm server` printed; needed on first start (and always with `insecure`). */
  token?: string
  /** State of the local agent, and the agent's certificate in `<dataDir>/agent/fleet`. */
  dataDir: string
  /** @default `<dataDir>/templates` */
  templatesDir?: string
  /** Labels the scheduler matches against a create's `agent.<key>` labels. @default {} */
  labels?: Record<string, string>
  /** Plain text, token on every call. @default false */
  insecure?: boolean
  /** @default 5_000 */
  heartbeatMs?: number
  /** The longest wait between reconnects. @default 5_000 */
  maxBackoffMs?: number
  logger?: Logger
  /** The agent that does the work. @default createLocalAgent over dataDir */
  local?: AgentApi
}

/** A running remote agent. */
export interface RunningAgent {
  agentId: string
  local: AgentApi
  /** Drops the link and stops the local agent; sandboxes keep running. */
  close(): Promise<void>
}

const firstBackoffMs = 200

const toWire = (err: unknown): WireError => {
  const e = SandstormError.from(err)
  return { code: e.code, message: e.message }
}

/** Joins (if needed), dials the server and serves its requests until closed. */
export async function runAgent(options: RemoteAgentOptions): Promise<RunningAgent> {
  const log = (options.logger ?? silentLogger()).child({ component: 'agent-link' })
  const { target } = linkTarget(options.serverUrl)
  const identity = await loadLinkIdentity({
    serverUrl: options.serverUrl,
    token: options.token,
    dir: join(options.dataDir, 'agent', 'fleet'),
    insecure: options.insecure ?? false,
  })
  const local = options.local ?? (await createLocalAgent({ dataDir: options.dataDir, templatesDir: options.templatesDir, logger: options.logger }))
  const { Client } = loadAgentLink()
  const client = new Client(target, identity.credentials, identity.channelOptions)
  const heartbeatMs = options.heartbeatMs ?? 5_000
  const maxBackoffMs = options.maxBackoffMs ?? 5_000
  const stopping = new AbortController()
  let control: grpc.ClientDuplexStream<AgentMessage, ServerMessage> | null = null
  const send = (msg: AgentMessage): void => {
    if (control && !control.writableEnded) control.write(msg)
  }
  const onCommand = (report: CommandReport): void => send({ event: { kind: 'command', json: JSON.stringify(report) } })
  const handlers = unaryHandlers(local, onCommand)
  const inflight = new Map<number, AbortController>()

  const unary = (req: RequestMessage): void => {
    const handler = handlers[req.kind]
    const ac = new AbortController()
    inflight.set(req.requestId, ac)
    Promise.resolve()
      .then(() => {
        if (!handler) throw new SandstormError('invalid_argument', `unknown request "${req.kind}"`)
        return handler(JSON.parse(req.payloadJson), { signal: ac.signal })
      })
      .then(
        (result) => send({ reply: { requestId: req.requestId, resultJson: JSON.stringify(result ?? null) } }),
        (err: unknown) => send({ reply: { requestId: req.requestId, resultJson: '', error: toWire(err) } }),
      )
      .finally(() => inflight.delete(req.requestId))
  }

  const data = async (req: RequestMessage): Promise<void> => {
    const p = JSON.parse(req.payloadJson)
    const ac = new AbortController()
    inflight.set(req.requestId, ac)
    const call = client.Data(identity.metadata()) as grpc.ClientDuplexStream<DataFrame, DataFrame>
    call.on('error', () => ac.abort())
    // The server ends the call when it stops listening (a follower gone): stop producing.
    call.on('status', () => ac.abort())
    const write = async (frame: Omit<DataFrame, 'requestId'>): Promise<void> => {
      if (call.writableEnded || ac.signal.aborted) return
      if (!call.write({ requestId: req.requestId, ...frame })) await Promise.race([once(call, 'drain'), once(ac.signal, 'abort')])
    }
    async function* chunks(): AsyncGenerator<Uint8Array> {
      // Leaving the loop at the end frame must not destroy the call: the answer still goes out on it.
      for await (const frame of call.iterator({ destroyOnReturn: false }) as AsyncIterable<DataFrame>) {
        if (frame.chunk && frame.chunk.length > 0) yield frame.chunk
        if (frame.end) return
      }
      throw new SandstormError('unavailable', 'the server went away during an upload')
    }
    try {
      call.write({ requestId: req.requestId })
      const o = { signal: ac.signal }
      switch (req.kind) {
        case 'exec': {
          // Start and output on one stream: a run costs one request and no second round trip
          // to follow. The stream opened (above) while the command starts.
          call.resume()
          const started = await startCommand(local, p, o, onCommand)
          await write({ json: JSON.stringify(started) })
          for await (const event of local.follow(p.id, started.pid, o)) await write({ json: JSON.stringify(event) })
          break
        }
        case 'follow':
          call.resume()
          for await (const event of local.follow(p.id, p.pid, o)) await write({ json: JSON.stringify(event) })
          break
        case 'readFile':
          call.resume()
          for await (const chunk of local.readFile(p.id, p.path, o)) await write({ chunk })
          break
        case 'writeFile':
          await local.writeFile(p.id, p.path, chunks(), o)
          break
        case 'writeStdin': {
          const parts: Uint8Array[] = []
          for await (const chunk of chunks()) parts.push(chunk)
          await local.writeStdin(p.id, p.pid, p.hasData ? Buffer.concat(parts) : null, p.close, o)
          break
        }
        default:
          throw new SandstormError('invalid_argument', `unknown data request "${req.kind}"`)
      }
      await write({ end: true })
    } catch (err) {
      if (!ac.signal.aborted) await write({ end: true, error: toWire(err) }).catch(() => undefined)
    } finally {
      inflight.delete(req.requestId)
      if (!call.writableEnded) call.end()
    }
  }

  /** One connection: register, heartbeats, requests; resolves with why it ended. */
  const session = async (): Promise<string> => {
    const call = client.Control(identity.metadata()) as grpc.ClientDuplexStream<AgentMessage, ServerMessage>
    control = call
    let timer: NodeJS.Timeout | undefined
    const ended = new Promise<string>((resolve) => {
      call.on('error', (err: grpc.ServiceError) => resolve(err.details || err.message))
      call.on('end', () => resolve('the server ended the link'))
      stopping.signal.addEventListener('abort', () => resolve('closing'), { once: true })
    })
    call.on('data', (msg: ServerMessage) => {
      if (msg.request) {
        if (msg.request.data) void data(msg.request)
        else unary(msg.request)
      } else if (msg.cancel) {
        inflight.get(msg.cancel.requestId)?.abort()
      }
    })
    try {
      const [templates, sandboxes] = await Promise.all([local.templates(), local.list()])
      send({
        register: {
          agentId: identity.agentId,
          infoJson: JSON.stringify(local.info()),
          sandboxesJson: JSON.stringify(sandboxes),
          templatesJson: JSON.stringify(templates.map((t) => t.name)),
          labelsJson: JSON.stringify(options.labels ?? {}),
        },
      })
      const beat = async (): Promise<void> => {
        const [metrics, list, names] = await Promise.all([hostMetrics(options.dataDir), local.list(), local.templates()])
        send({ heartbeat: { ...metrics, sandboxes: list.length, templatesJson: JSON.stringify(names.map((t) => t.name)) } })
      }
      await beat()
      timer = setInterval(() => void beat().catch((err: unknown) => log.warn({ err }, 'heartbeat failed')), heartbeatMs)
      return await ended
    } finally {
      clearInterval(timer)
      control = null
      if (!call.writableEnded) call.end()
      call.cancel()
      // Work of this link is void: the server failed its side of it already.
      for (const ac of inflight.values()) ac.abort()
      inflight.clear()
    }
  }

  const loop = (async () => {
    let backoffMs = firstBackoffMs
    while (!stopping.signal.aborted) {
      const startedAt = Date.now()
      let reason: string
      try {
        log.info({ server: target, agentId: identity.agentId }, 'connecting to the server')
        reason = await session()
      } catch (err) {
        reason = (err as Error).message
      }
      if (stopping.signal.aborted) break
      if (Date.now() - startedAt > 10_000) backoffMs = firstBackoffMs
      const waitMs = Math.round(backoffMs * (0.75 + Math.random() * 0.5))
      log.warn({ server: target, reason, retryMs: waitMs }, 'link to the server lost; reconnecting')
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, waitMs)
        stopping.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true })
      })
      backoffMs = Math.min(backoffMs * 2, maxBackoffMs)
    }
  })()

  let closing: Promise<void> | undefined
  return {
    agentId: identity.agentId,
    local,
    close: () =>
      (closing ??= (async () => {
        stopping.abort()
        await loop
        client.close()
        await local.close()
      })()),
  }
}
