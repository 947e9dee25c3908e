/** `sandstorm agent`: a local agent that dials the server and keeps the link up, reconnecting with backoff. */
import { once } from 'node:events'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { loadAgentLink } from '../proto/index.js'
import type { AgentMessage, DataFrame, RequestMessage, ServerMessage } from '../proto/index.js'
import { SandstormError, silentLogger } from '../shared/index.js'
import type { Logger } from '../shared/index.js'
import type { AgentApi } from './agent-api.js'
import { hostMetrics } from './host-metrics.js'
import { createLocalAgent } from './local-agent.js'
import { isLinkData } from './link-contract.js'
import { dataHandlers as createDataHandlers, unaryHandlers as createUnaryHandlers } from './link-handlers.js'
import type { CommandReport, DataIo } from './link-handlers.js'
import { forgetLinkIdentity, heartbeatHeader, linkTarget, loadLinkIdentity, retryAfterHeader } from './remote-link.js'
import type { LinkIdentity } from './remote-link.js'
import { answerUnary, toWire } from './unary-reply.js'

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
  /** Its id in the fleet (a new one after joining again). */
  readonly agentId: string
  local: AgentApi
  /**
   * Settles when the agent stops serving: with undefined after close(), or with a
   * `permission_denied` error when the server removed it and revoked its certificate (it stops
   * and does not retry; started again with a join token, it joins afresh).
   */
  stopped: Promise<SandstormError | undefined>
  /** Drops the link and stops the local agent; sandboxes keep running. */
  close(): Promise<void>
}

const firstBackoffMs = 200

/** Idle Data streams kept open for the server's next requests. */
const spareStreams = 4

/** A Data stream as the agent holds it. */
type DataCall = grpc.ClientDuplexStream<DataFrame, DataFrame>

/** Joins (if needed), dials the server and serves its requests until closed. */
export async function runAgent(options: RemoteAgentOptions): Promise<RunningAgent> {
  const log = (options.logger ?? silentLogger()).child({ component: 'agent-link' })
  const { target } = linkTarget(options.serverUrl)
  const identityDir = join(options.dataDir, 'agent', 'fleet')
  const load = (): Promise<LinkIdentity> =>
    loadLinkIdentity({ serverUrl: options.serverUrl, token: options.token, dir: identityDir, insecure: options.insecure ?? false })
  let identity = await load()
  const local = options.local ?? (await createLocalAgent({ dataDir: options.dataDir, templatesDir: options.templatesDir, logger: options.logger }))
  const { Client } = loadAgentLink()
  let client = new Client(target, identity.credentials, identity.channelOptions)
  /** The server's interval once it says one, else ours. */
  let heartbeatMs = options.heartbeatMs ?? 5_000
  /** A certificate from disk may be refused as revoked; with a token given at this start, join afresh once. */
  let mayRejoin = options.token !== undefined && !identity.joined
  const maxBackoffMs = options.maxBackoffMs ?? 5_000
  const stopping = new AbortController()
  let control: grpc.ClientDuplexStream<AgentMessage, ServerMessage> | null = null
  const send = (msg: AgentMessage): void => {
    if (control && !control.writableEnded) control.write(msg)
  }
  const onCommand = (report: CommandReport): void => send({ event: { kind: 'command', json: JSON.stringify(report) } })
  const unaryHandlers = createUnaryHandlers(local)
  const dataHandlers = createDataHandlers(local, onCommand)
  const inflight = new Map<number, AbortController>()

  const unary = (req: RequestMessage): void => {
    const ac = new AbortController()
    inflight.set(req.requestId, ac)
    void answerUnary(unaryHandlers, req, ac.signal)
      .then((reply) => send({ reply }))
      .finally(() => inflight.delete(req.requestId))
  }

  /** Serves a request answered on a Data stream: on `spare` when the request came down one, else on a stream opened now. */
  const data = async (req: RequestMessage, spare?: DataCall): Promise<void> => {
    const ac = new AbortController()
    inflight.set(req.requestId, ac)
    const call = spare ?? (client.Data(identity.metadata()) as DataCall)
    call.on('error', () => ac.abort())
    // The server ends the call when it stops listening (a follower gone): stop producing.
    call.on('status', () => ac.abort())
    const write = async (frame: Omit<DataFrame, 'requestId'>): Promise<void> => {
      if (call.writableEnded || ac.signal.aborted) return
      if (!call.write({ requestId: req.requestId, ...frame })) await Promise.race([once(call, 'drain'), once(ac.signal, 'abort')])
    }
    const io: DataIo = {
      write,
      async *chunks() {
        // Leaving the loop at the end frame must not destroy the call: the answer still goes out on it.
        for await (const frame of call.iterator({ destroyOnReturn: false }) as AsyncIterable<DataFrame>) {
          if (frame.chunk && frame.chunk.length > 0) yield frame.chunk
          if (frame.end) return
        }
        throw new SandstormError('unavailable', 'the server went away during an upload')
      },
      resume: () => void call.resume(),
      signal: ac.signal,
    }
    try {
      if (!spare) call.write({ requestId: req.requestId })
      if (!isLinkData(req.kind)) throw new SandstormError('invalid_argument', `unknown data request "${req.kind}"`)
      const handler = dataHandlers[req.kind] as (input: unknown, io: DataIo) => Promise<void>
      // Once the command started, an exec follows it to its end even after the server stopped listening.
      if (req.kind === 'exec') ac.signal.addEventListener('abort', () => call.writableEnded || call.end(), { once: true })
      await handler(JSON.parse(req.payloadJson), io)
      await write({ end: true })
    } catch (err) {
      if (!ac.signal.aborted) await write({ end: true, error: toWire(err) }).catch(() => undefined)
    } finally {
      inflight.delete(req.requestId)
      if (!call.writableEnded) call.end()
    }
  }

  /** One connection: register, heartbeats, requests; resolves with why it ended. */
  const session = async (): Promise<{ reason: string; code?: grpc.status; retryAfterMs?: number }> => {
    const call = client.Control(identity.metadata()) as grpc.ClientDuplexStream<AgentMessage, ServerMessage>
    control = call
    let timer: NodeJS.Timeout | undefined
    let beat: (() => Promise<void>) | undefined
    const ended = new Promise<{ reason: string; code?: grpc.status; retryAfterMs?: number }>((resolve) => {
      call.on('error', (err: grpc.ServiceError) => {
        const retryAfterMs = Number(err.metadata?.get(retryAfterHeader)[0])
        resolve({ reason: err.details || err.message, code: err.code, ...(Number.isSafeInteger(retryAfterMs) && retryAfterMs > 0 ? { retryAfterMs } : {}) })
      })
      call.on('end', () => resolve({ reason: 'the server ended the link' }))
      stopping.signal.addEventListener('abort', () => resolve({ reason: 'closing' }), { once: true })
    })
    const schedule = (): void => {
      clearInterval(timer)
      // One beat at a time: a beat that waits (a slow list of sandboxes, a stalled disk) skips the
      // turns it missed instead of sending them all at once when it ends, which the server reads as a flood.
      let beating = false
      if (beat) {
        timer = setInterval(() => {
          if (beating) return
          beating = true
          void beat!()
            .catch((err: unknown) => log.warn({ err }, 'heartbeat failed'))
            .finally(() => (beating = false))
        }, heartbeatMs)
      }
    }
    call.on('metadata', (metadata: grpc.Metadata) => {
      // Accepted: a revocation from now on was made while this process ran, and it stops.
      mayRejoin = false
      const wanted = Number(metadata.get(heartbeatHeader)[0])
      if (!Number.isSafeInteger(wanted) || wanted <= 0 || wanted === heartbeatMs) return
      log.info({ heartbeatMs: wanted }, 'heartbeat interval set by the server')
      heartbeatMs = wanted
      schedule()
    })
    // Data streams opened ahead of need: the server sends a request down one instead of asking on
    // Control for a stream, so a run costs no stream setup and one message less on its path.
    const spares = new Set<DataCall>()
    const topUp = (): void => {
      while (spares.size < spareStreams && control === call && !stopping.signal.aborted) {
        const spare = client.Data(identity.metadata()) as DataCall
        spares.add(spare)
        const drop = (): void => void spares.delete(spare)
        spare.on('error', drop)
        spare.on('status', drop)
        spare.once('data', (frame: DataFrame) => {
          spare.pause()
          drop()
          try {
            const { kind, payloadJson } = JSON.parse(frame.json ?? '') as { kind: string; payloadJson: string }
            void data({ requestId: frame.requestId, kind, payloadJson, data: true }, spare)
          } catch {
            spare.cancel()
          }
          // The request first: opening a stream costs both ends a millisecond of CPU, which the
          // command's start waited for when the replacement was opened before it.
          setImmediate(topUp)
        })
        spare.write({ requestId: 0 })
      }
    }
    call.on('data', (msg: ServerMessage) => {
      if (msg.request) {
        // The first request proves that the server holds this link: spares offered from then on find it.
        topUp()
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
      beat = async (): Promise<void> => {
        const [metrics, list, names] = await Promise.all([hostMetrics(options.dataDir), local.list(), local.templates()])
        send({ heartbeat: { ...metrics, sandboxes: list.length, templatesJson: JSON.stringify(names.map((t) => t.name)) } })
      }
      await beat()
      schedule()
      return await ended
    } finally {
      clearInterval(timer)
      for (const spare of spares) spare.cancel()
      control = null
      if (!call.writableEnded) call.end()
      call.cancel()
      // Work of this link is void: the server failed its side of it already.
      for (const ac of inflight.values()) ac.abort()
      inflight.clear()
    }
  }

  const loop = (async (): Promise<SandstormError | undefined> => {
    let backoffMs = firstBackoffMs
    while (!stopping.signal.aborted) {
      const startedAt = Date.now()
      let reason: string
      let code: grpc.status | undefined
      let retryAfterMs: number | undefined
      try {
        log.info({ server: target, agentId: identity.agentId }, 'connecting to the server')
        ;({ reason, code, retryAfterMs } = await session())
      } catch (err) {
        reason = (err as Error).message
      }
      if (stopping.signal.aborted) break
      if (code === grpc.status.PERMISSION_DENIED) {
        if (!mayRejoin) {
          log.error({ server: target, agentId: identity.agentId, reason }, 'the server revoked this agent; stopping (start it with --token to join again)')
          return new SandstormError('permission_denied', `the server refused this agent: ${reason}`)
        }
        mayRejoin = false
        log.warn({ server: target, agentId: identity.agentId, reason }, 'the server revoked this agent\'s certificate; joining again with the token')
        try {
          await forgetLinkIdentity(identityDir)
          identity = await load()
          client.close()
          client = new Client(target, identity.credentials, identity.channelOptions)
          log.info({ server: target, agentId: identity.agentId }, 'joined again')
          continue
        } catch (err) {
          log.error({ server: target, err }, 'could not join again; stopping')
          return SandstormError.from(err)
        }
      }
      if (Date.now() - startedAt > 10_000) backoffMs = firstBackoffMs
      // The server refuses a link sooner than it asked for (a flapping agent's), so its word is the least wait.
      const waitMs = Math.max(retryAfterMs ?? 0, Math.round(backoffMs * (0.75 + Math.random() * 0.5)))
      log.warn({ server: target, reason, retryMs: waitMs }, 'link to the server lost; reconnecting')
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, waitMs)
        stopping.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true })
      })
      backoffMs = Math.min(backoffMs * 2, maxBackoffMs)
    }
    return undefined
  })()

  let closing: Promise<void> | undefined
  return {
    get agentId() {
      return identity.agentId
    },
    local,
    stopped: loop,
    close: () =>
      (closing ??= (async () => {
        stopping.abort()
        await loop
        client.close()
        await local.close()
      })()),
  }
}
