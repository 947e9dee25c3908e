/** The agent <-> server protocol: the AgentLink gRPC service loaded from agent.proto at run time. */
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { SandstormError } from '../shared/index.js'

/** A structured error on the wire: a SandstormError's code, message and whether a client may see the message; never its cause. */
export interface WireError {
  code: string
  message: string
  /** The message is for the server's log only. */
  hidden?: boolean
}

/** JoinRequest of agent.proto. */
export interface JoinRequest {
  token: string
  hostname: string
}

/** JoinReply of agent.proto. */
export interface JoinReply {
  agentId: string
  certPem: string
  keyPem: string
  caPem: string
}

/** Register of agent.proto. */
export interface RegisterMessage {
  agentId: string
  infoJson: string
  sandboxesJson: string
  templatesJson: string
  labelsJson: string
}

/** Heartbeat of agent.proto: host metrics. */
export interface HeartbeatMessage {
  load1: number
  memoryFreeMib: number
  memoryTotalMib: number
  diskFreeMib: number
  sandboxes: number
  templatesJson: string
}

/** Reply of agent.proto. */
export interface ReplyMessage {
  requestId: number
  resultJson: string
  error?: WireError | null
}

/** Event of agent.proto. */
export interface EventMessage {
  kind: string
  json: string
}

/** What the agent sends on Control. */
export interface AgentMessage {
  register?: RegisterMessage
  heartbeat?: HeartbeatMessage
  reply?: ReplyMessage
  event?: EventMessage
  msg?: 'register' | 'heartbeat' | 'reply' | 'event'
}

/** Request of agent.proto. */
export interface RequestMessage {
  requestId: number
  kind: string
  payloadJson: string
  data: boolean
}

/** What the server sends on Control. */
export interface ServerMessage {
  request?: RequestMessage
  cancel?: { requestId: number }
  msg?: 'request' | 'cancel'
}

/** DataFrame of agent.proto. */
export interface DataFrame {
  requestId: number
  chunk?: Uint8Array
  json?: string
  end?: boolean
  error?: WireError | null
}

/** The loaded service: its definition (for a server) and its client constructor (for an agent). */
export interface AgentLinkProto {
  service: grpc.ServiceDefinition
  Client: grpc.ServiceClientConstructor
}

let loaded: AgentLinkProto | undefined

/** Loads agent.proto once (tsc does not copy it to dist, so the source copy is the fallback). */
export function loadAgentLink(): AgentLinkProto {
  if (loaded) return loaded
  const beside = fileURLToPath(new URL('./agent.proto', import.meta.url))
  const source = fileURLToPath(new URL('../../../src/proto/agent.proto', import.meta.url))
  const file = existsSync(beside) ? beside : source
  const definition = protoLoader.loadSync(file, { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true })
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    sandstorm: { agent: { v1: { AgentLink: grpc.ServiceClientConstructor } } }
  }
  const Client = pkg.sandstorm.agent.v1.AgentLink
  loaded = { service: Client.service, Client }
  return loaded
}

/**
 * The largest message either side of the link reads. The server reads it from anyone who connects
 * (a Join comes before any identity, and grpc-js sets the limit for the whole server, not per
 * method), so it is no larger than the link needs: a request carries at most an 8 MiB JSON body
 * of the HTTP API; an agent's answer past it is refused by the agent itself (remote-agent.ts).
 */
export const maxLinkMessageBytes = 16 * 1024 * 1024

/** Control and Data streams are long-lived; keepalive finds a dead peer behind a silent network. */
export const linkChannelOptions: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_receive_message_length': maxLinkMessageBytes,
  'grpc.max_send_message_length': maxLinkMessageBytes,
}

/** A parsed join token: `SST1.<sha256 of the server's CA, hex, or "insecure">.<secret>`. */
export interface JoinToken {
  /** null on an --insecure link. */
  caSha256: string | null
  secret: string
}

/** Parses a join token, or throws `invalid_argument` saying what the form is. */
export function parseJoinToken(token: string): JoinToken {
  const match = /^SST1\.([0-9a-f]{64}|insecure)\.([A-Za-z0-9_-]{20,})$/.exec(token.trim())
  if (!match) throw new SandstormError('invalid_argument', 'the join token is malformed: expected SST1.<ca hash>.<secret> as `sandstorm server` prints it')
  return { caSha256: match[1] === 'insecure' ? null : match[1]!, secret: match[2]! }
}

/** Metadata an agent sends on an --insecure link in place of a certificate. */
export const insecureHeaders = { token: 'x-sandstorm-token', agent: 'x-sandstorm-agent' } as const

/** The common name of the server's certificate; agents accept no other server. */
export const serverCommonName = 'sandstorm-server'
