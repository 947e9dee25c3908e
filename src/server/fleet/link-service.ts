/** The AgentLink gRPC server: join, the Control stream of each agent, and the Data streams they open. */
import { createServer as createNetServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import * as grpc from '@grpc/grpc-js'
import { experimental } from '@grpc/grpc-js'
import { insecureHeaders, loadAgentLink, linkChannelOptions, parseJoinToken } from '../../proto/index.js'
import type { AgentMessage, DataFrame, JoinReply, JoinRequest, ServerMessage } from '../../proto/index.js'
import { newId, SandstormError } from '../../shared/index.js'
import type { Logger } from '../../shared/index.js'
import { createAgentConnection } from './agent-connection.js'
import type { AgentConnection } from './agent-connection.js'
import type { AgentRegistry } from './agent-registry.js'
import type { CommandLog } from './command-log.js'
import { hostnameSchema, loggableHostname, parseCommandEvent, parseHeartbeat, parseRegistration } from './agent-messages.js'
import { secretMatches } from './join-token.js'
import { createHeartbeatGate, createReconnectGate } from './link-rates.js'
import type { LinkRateOptions } from './link-rates.js'
import type { FleetPki } from './pki.js'

/** Options of startLinkServer. */
export interface LinkServerOptions {
  host: string
  port: number
  registry: AgentRegistry
  commandLog: CommandLog
  logger: Logger
  /** The join secret agents must present (read at each use: it can be replaced). */
  secret: () => string
  /** TLS material; null for a plain-text (--insecure) link. */
  pki: FleetPki | null
  /** The heartbeat interval agents are told to keep; unset, each keeps its own. */
  heartbeatMs?: number
  /** How often an agent may beat and open a link. @default link-rates.ts's */
  rates?: LinkRateOptions
}

/** A listening link server. */
export interface LinkServer {
  port: number
  close(): Promise<void>
}


/** Streams one connection to the link server may hold open at once. */
export const maxStreamsPerConnection = 1024

/** Response metadata of Control, and of its refusal for reconnecting too often (agent.proto says so; the agent names them too). */
const linkHeaders = { heartbeatMs: 'x-sandstorm-heartbeat-ms', retryAfterMs: 'x-sandstorm-retry-after-ms' } as const

/** An error that ends a call with this status (a server stream sends it when it hears 'error'; destroy() would send nothing). */
const refuse = (code: grpc.status, message: string): grpc.ServiceError =>
  Object.assign(new Error(message), { code, details: message, metadata: new grpc.Metadata() })

/** Starts the gRPC server the agents dial. */
export async function startLinkServer(options: LinkServerOptions): Promise<LinkServer> {
  const { registry, commandLog, pki } = options
  const logger = options.logger.child({ component: 'fleet' })
  const reconnects = createReconnectGate(options.rates)
  const server = new grpc.Server({
    ...linkChannelOptions,
    // Agents ping every 10 s to find a dead link; let them.
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    // Streams one connection may hold open, each reading up to a whole message: without it, anyone
    // who connects may open billions. Not 128: an agent's every running exec, transfer and ingress
    // connection is a Data stream on its one connection, and grpc-js queues those past the limit.
    'grpc.max_concurrent_streams': maxStreamsPerConnection,
  })

  /** Who is calling: the agent id in its certificate, or (insecure) in its metadata with the token. */
  const identify = (call: grpc.ServerDuplexStream<unknown, unknown>): string => {
    let agentId: string
    if (pki) {
      const verdict = pki.verifyAgent(call.getAuthContext().sslPeerCertificate?.raw)
      if ('refused' in verdict) throw new SandstormError('unauthenticated', verdict.refused)
      agentId = verdict.agentId
    } else {
      const token = String(call.metadata.get(insecureHeaders.token)[0] ?? '')
      agentId = String(call.metadata.get(insecureHeaders.agent)[0] ?? '')
      if (!secretMatches(token, options.secret())) throw new SandstormError('unauthenticated', 'wrong join token')
      if (!/^ag-[a-z0-9]{16}$/.test(agentId)) throw new SandstormError('unauthenticated', `agent id "${agentId}" is malformed`)
    }
    // Checked before `known`: a removed agent is unknown too, and it is told why.
    if (registry.revoked(agentId)) throw new SandstormError('permission_denied', `agent "${agentId}" was removed and its certificate revoked: join again with a token`)
    if (pki && !registry.known(agentId)) throw new SandstormError('unauthenticated', `agent "${agentId}" is not known to this server`)
    return agentId
  }

  /**
   * Logs a command event of a sandbox the catalog places on that agent only. One that is
   * malformed, or about a sandbox of another agent or of none (an unknown id once passed, and
   * filled the log under any id), is dropped and logged; the link goes on (a log entry is not
   * worth the agent's every call).
   */
  const recordCommand = (agentId: string, json: string): void => {
    let event: ReturnType<typeof parseCommandEvent>
    try {
      event = parseCommandEvent(json)
    } catch (err) {
      logger.warn({ agentId, err }, 'dropped a malformed command event')
      return
    }
    if (registry.holds(agentId, event.sandboxId)) commandLog.record({ ...event, agentId })
    else logger.warn({ agentId, sandboxId: event.sandboxId }, 'dropped a command event for a sandbox the catalog does not place on this agent')
  }

  const guard = (call: grpc.ServerDuplexStream<unknown, unknown>, what: string): string | undefined => {
    try {
      return identify(call)
    } catch (err) {
      const e = SandstormError.from(err)
      logger.warn({ peer: call.getPeer(), call: what, reason: e.message }, 'refused an agent')
      // PERMISSION_DENIED tells a revoked agent to stop; UNAUTHENTICATED is worth a retry (a server restored from backup).
      call.emit('error', refuse(e.code === 'permission_denied' ? grpc.status.PERMISSION_DENIED : grpc.status.UNAUTHENTICATED, e.message))
      return undefined
    }
  }

  const handlers: grpc.UntypedServiceImplementation = {
    Join(call: grpc.ServerUnaryCall<JoinRequest, JoinReply>, callback: grpc.sendUnaryData<JoinReply>) {
      const peer = call.getPeer()
      if (!pki) return callback(refuse(grpc.status.FAILED_PRECONDITION, 'this server runs --insecure: agents present the token on every call instead'))
      // The whole token as `sandstorm server` prints it, or its secret alone.
      const secret = parsedSecret(call.request.token)
      if (!secretMatches(secret, options.secret())) {
        // Anyone may send anything here: the log gets a bounded, printable cut of it.
        logger.warn({ peer, hostname: loggableHostname(call.request.hostname) }, 'refused a join: wrong token')
        return callback(refuse(grpc.status.UNAUTHENTICATED, 'wrong join token'))
      }
      const named = hostnameSchema.safeParse(call.request.hostname)
      if (!named.success) {
        logger.warn({ peer, hostname: loggableHostname(call.request.hostname) }, 'refused a join: malformed hostname')
        return callback(refuse(grpc.status.INVALID_ARGUMENT, `the hostname ${JSON.stringify(loggableHostname(call.request.hostname).slice(0, 64))} is malformed: expected 1-253 printable characters`))
      }
      const hostname = named.data
      const agentId = newId('ag')
      // One catch for the certificate and the record: a failed write of the agent's row (a full
      // disk) must answer this join, not be a rejection nobody handles (which ends the process).
      pki
        .issueAgent(agentId)
        .then((pair) => {
          registry.admit(agentId, hostname)
          logger.info({ peer, agentId, hostname }, 'agent joined')
          callback(null, { agentId, certPem: pair.certPem, keyPem: pair.keyPem, caPem: pki.caPem })
        })
        .catch((err: unknown) => {
          logger.error({ peer, err }, 'a join failed')
          callback(refuse(grpc.status.INTERNAL, 'the join failed on the server; it logged why'))
        })
    },

    Control(call: grpc.ServerDuplexStream<AgentMessage, ServerMessage>) {
      const agentId = guard(call, 'Control')
      if (!agentId) return
      // Before anything of the link is read: its registration is parsed whole, written and adopted.
      const link = reconnects.admit(agentId)
      if (!link.open) {
        const message = `agent "${agentId}" reconnects too often: retry after ${link.retryAfterMs} ms`
        // One line per wait: an agent that ignores it would otherwise fill the log at its own pace.
        if (link.firstRefusal) logger.warn({ agentId, peer: call.getPeer(), retryAfterMs: link.retryAfterMs }, 'refused a link: the agent reconnects too often')
        const refusal = refuse(grpc.status.RESOURCE_EXHAUSTED, message)
        refusal.metadata.set(linkHeaders.retryAfterMs, String(link.retryAfterMs))
        call.emit('error', refusal)
        return
      }
      const heartbeats = createHeartbeatGate(options.heartbeatMs, options.rates)
      // Sent at once: the agent learns that it was accepted (and the interval, if the server sets one).
      const settings = new grpc.Metadata()
      if (options.heartbeatMs !== undefined) settings.set(linkHeaders.heartbeatMs, String(options.heartbeatMs))
      call.sendMetadata(settings)
      let conn: AgentConnection | undefined
      let ended = false
      const end = (reason: string): void => {
        if (ended) return
        ended = true
        link.closed()
        if (conn) registry.detach(conn, reason)
        if (!call.writableEnded) call.end()
      }
      call.on('data', (msg: AgentMessage) => {
        if (ended) return
        try {
          if (msg.register) {
            // Checked whole before anything of it is kept: a bad one ends the link, the old entry stays.
            const registration = parseRegistration(agentId, msg.register)
            if (conn) registry.detach(conn, 'registered again')
            conn = createAgentConnection(
              agentId,
              (m) => void call.write(m),
              () => call.emit('error', refuse(grpc.status.UNAVAILABLE, 'the server dropped this link (no heartbeat in time, or a newer link)')),
            )
            registry.attach(conn, registration)
          } else if (!conn) {
            throw new SandstormError('failed_precondition', `expected register first, got ${msg.msg}`)
          } else if (msg.heartbeat) {
            const verdict = heartbeats.admit()
            // A dropped one is not parsed nor written: the agent's next one in time is.
            if (verdict === 'keep') registry.heartbeat(agentId, parseHeartbeat(msg.heartbeat))
            else if (verdict === 'end') {
              const reason = `heartbeats far more often than one per ${heartbeats.minGapMs} ms`
              logger.warn({ agentId, minGapMs: heartbeats.minGapMs, toldMs: options.heartbeatMs }, 'ended a link: heartbeats far more often than allowed')
              call.emit('error', refuse(grpc.status.RESOURCE_EXHAUSTED, `${reason}: link ended`))
              end(reason)
            }
          } else if (msg.reply) {
            conn.onReply(msg.reply)
          } else if (msg.event?.kind === 'command') {
            recordCommand(agentId, msg.event.json)
          }
        } catch (err) {
          logger.error({ agentId, err }, 'bad message on the control stream; closing it')
          call.emit('error', refuse(grpc.status.INVALID_ARGUMENT, (err as Error).message))
          end('protocol error')
        }
      })
      call.on('end', () => end('the agent closed the link'))
      call.on('error', () => end('the link broke'))
      call.on('cancelled', () => end('the link was cut'))
      call.on('close', () => end('the link closed'))
    },

    Data(call: grpc.ServerDuplexStream<DataFrame, DataFrame>) {
      const agentId = guard(call, 'Data')
      if (!agentId) return
      call.on('error', () => undefined)
      call.once('data', (first: DataFrame) => {
        call.pause()
        const conn = registry.get(agentId)?.conn
        if (first.requestId === 0 && conn) return conn.offerSpare(call)
        if (!conn?.onData(first.requestId, call)) {
          logger.warn({ agentId, requestId: first.requestId }, 'a data stream for no pending request')
          call.end()
        }
      })
    },
  }
  server.addService(loadAgentLink().service, handlers)

  // The chain carries the CA too, so that a joining agent can find it and compare it with its token.
  const certificates = pki && staticCertificates(Buffer.from(pki.caPem), { certificate: Buffer.from(pki.server.certPem + pki.caPem), privateKey: Buffer.from(pki.server.keyPem) })
  const credentials = certificates
    ? experimental.createCertificateProviderServerCredentials(
        certificates,
        certificates,
        // Join comes without a certificate; Control and Data check theirs in identify().
        false,
      )
    : grpc.ServerCredentials.createInsecure()
  // Our own listener rather than bindAsync: grpc-js leaves Nagle on for the sockets it accepts, so
  // a small request written while an earlier frame waits for its ACK sat up to a delayed-ACK
  // timeout (tens of ms) on the wire. The link is many small messages, each on someone's path.
  const injector = server.createConnectionInjector(credentials)
  const listener = createNetServer({ noDelay: true }, (socket) => injector.injectConnection(socket))
  const address = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`
  const port = await new Promise<number>((resolve, reject) => {
    listener.once('error', (err) => reject(new SandstormError('unavailable', `could not listen for agents on ${address}: ${err.message}`)))
    listener.listen(options.port, options.host, () => resolve((listener.address() as AddressInfo).port))
  })
  logger.info({ address: `${options.host}:${port}`, tls: pki !== null }, 'listening for agents')
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        // Agents reconnect to the next server; there is nothing to drain.
        listener.close(() => resolve())
        injector.destroy()
        server.forceShutdown()
      }),
  }
}

/** A certificate provider that never changes (grpc-js only takes optional client certificates through one). */
function staticCertificates(ca: Buffer, identity: { certificate: Buffer; privateKey: Buffer }): experimental.CertificateProvider {
  return {
    // Later, not at once: grpc-js subscribes before it registers the watcher that needs the update.
    addCaCertificateListener: (listener) => void setImmediate(() => listener({ caCertificate: ca })),
    removeCaCertificateListener: () => undefined,
    addIdentityCertificateListener: (listener) => void setImmediate(() => listener(identity)),
    removeIdentityCertificateListener: () => undefined,
  }
}

/** The secret of a join token, or the text itself when it is no whole token (an agent may send the secret alone). */
function parsedSecret(token: string): string {
  try {
    return parseJoinToken(token).secret
  } catch {
    return token
  }
}
