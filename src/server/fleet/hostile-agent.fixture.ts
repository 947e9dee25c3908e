/**
 * A hand-driven agent on the fleet link, for tests: it holds a valid identity (an --insecure
 * server's token) and sends whatever a test tells it to, as a compromised agent host could.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { runAgent } from '../../agent/index.js'
import type { RunningAgent } from '../../agent/index.js'
import { insecureHeaders, loadAgentLink, parseJoinToken } from '../../proto/index.js'
import type { AgentMessage, DataFrame, ServerMessage } from '../../proto/index.js'
import { silentLogger } from '../../shared/index.js'
import { createFakeAgent } from '../fake-agent.fixture.js'
import type { FakeAgent } from '../fake-agent.fixture.js'
import { startServer } from '../index.js'
import type { RunningServer, ServerOptions } from '../index.js'
import type { FleetOptions } from './index.js'
import { until } from '../../../test/helpers/until.js'

/** Answer with this to leave a request unanswered. */
export const silence = Symbol('no answer')

/** What a hostile agent answers a request with: a value (sent as JSON), an Error (the call's failure), or silence. */
export type HostileAnswer = (kind: string, payload: unknown) => unknown

/** `promise`, or a rejection naming `what` after `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms).unref())])
}

/** An honest-looking agent's answers: no sandboxes, and a create that succeeds. */
export const plainAnswer: HostileAnswer = (kind, payload) =>
  kind === 'list' || kind === 'templates' || kind === 'snapshots.list' ? [] : kind === 'create' ? { id: (payload as { id: string }).id, template: 'debian', runtime: 'runc', status: 'running' } : null

/** A hand-driven agent: registers as told, answers requests with `answer`, and records what it was asked. */
export function hostileAgent(port: number, token: string, agentId: string) {
  const { Client } = loadAgentLink()
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  const metadata = (): grpc.Metadata => {
    const m = new grpc.Metadata()
    m.set(insecureHeaders.token, parseJoinToken(token).secret)
    m.set(insecureHeaders.agent, agentId)
    return m
  }
  const asked: { kind: string; payload: unknown }[] = []
  let answer: HostileAnswer = plainAnswer
  const control = client.Control(metadata()) as grpc.ClientDuplexStream<AgentMessage, ServerMessage>
  const ended = new Promise<{ code: grpc.status | 'end'; details: string; trailers?: grpc.Metadata }>((resolve) => {
    control.on('error', (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details, trailers: err.metadata }))
    control.on('end', () => resolve({ code: 'end', details: '' }))
  })
  control.on('data', (msg: ServerMessage) => {
    if (!msg.request) return
    const payload = JSON.parse(msg.request.payloadJson) as unknown
    asked.push({ kind: msg.request.kind, payload })
    const result = answer(msg.request.kind, payload)
    if (result === silence) return
    // An Error is answered as the agent's failure of the call.
    if (result instanceof Error) control.write({ reply: { requestId: msg.request.requestId, resultJson: '', error: { code: 'internal', message: result.message } } })
    else control.write({ reply: { requestId: msg.request.requestId, resultJson: JSON.stringify(result ?? null) } })
  })
  const register = (fields: Partial<{ infoJson: string; templatesJson: string; labelsJson: string; sandboxesJson: string }> = {}): void =>
    void control.write({
      register: { agentId, infoJson: JSON.stringify({ hostname: 'hostile', runtimes: ['runc'], cpus: 64, memoryMiB: 1 << 20 }), sandboxesJson: '[]', templatesJson: '[]', labelsJson: '{}', ...fields },
    })
  /** Resolves once the server accepted the Control stream (it sends its metadata at once). */
  const accepted = new Promise<void>((resolve) => control.once('metadata', () => resolve()))
  return {
    agentId,
    asked,
    ended,
    accepted,
    register,
    answerWith: (fn: HostileAnswer) => void (answer = fn),
    send: (msg: AgentMessage) => void control.write(msg),
    /** Opens a Data stream ahead of need, as agents do; resolves once the server ends it (or never). */
    spare(): Promise<void> {
      const call = client.Data(metadata()) as grpc.ClientDuplexStream<DataFrame, DataFrame>
      call.on('error', () => undefined)
      call.write({ requestId: 0 })
      return new Promise((resolve) => call.on('end', resolve).on('status', () => resolve()))
    },
    close: () => (control.end(), client.close()),
  }
}

/** A hostile agent as hostileAgent makes it. */
export type HostileAgent = ReturnType<typeof hostileAgent>

/** A server with an --insecure fleet, one honest agent (a fake behind runAgent) and hostile agents made on demand. */
export interface HostileFleet {
  server: RunningServer
  /** The honest agent's sandboxes and hooks. */
  fake: FakeAgent
  /** A call to the server's HTTP API with its key. */
  api(path: string, init?: RequestInit): Promise<Response>
  /** A hostile agent, registered with `fields` and live once this resolves. */
  hostile(n: number, fields?: Parameters<HostileAgent['register']>[0]): Promise<HostileAgent>
  /** A hostile agent with its Control stream open, not registered yet. */
  connect(n: number): HostileAgent
  /** Starts the honest agent, with these labels; resolves once it is live. */
  startHonest(labels?: Record<string, string>): Promise<void>
  /** Creates a sandbox with these labels (`agent.zone` picks an agent); its id. */
  create(labels?: Record<string, string>): Promise<string>
  close(): Promise<void>
}

/** Starts a HostileFleet; `options` go to startServer and its fleet. */
export async function startHostileFleet(options: { server?: Partial<ServerOptions>; fleet?: Partial<FleetOptions>; fake?: FakeAgent } = {}): Promise<HostileFleet> {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-hostile-'))
  const server = await startServer({ dataDir: join(dir, 'server'), port: 0, logger: silentLogger(), ...options.server, fleet: { port: 0, insecure: true, lostAfterMs: 600_000, ...options.fleet } })
  const fake = options.fake ?? createFakeAgent({ snapshots: true })
  const hostiles: HostileAgent[] = []
  let honest: RunningAgent | undefined
  const api = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${server.url}${path}`, { ...init, headers: { authorization: `Bearer ${server.apiKey}`, 'content-type': 'application/json', ...init.headers } })
  const isLive = async (id: string): Promise<boolean> =>
    ((await (await api('/v1/agents')).json()) as { agents: { id: string; state: string }[] }).agents.some((a) => a.id === id && a.state === 'live')
  const connect = (n: number): HostileAgent => {
    const h = hostileAgent(server.fleet!.port, server.fleet!.joinToken, `ag-${String(n).padStart(16, 'h')}`)
    hostiles.push(h)
    return h
  }
  return {
    server,
    fake,
    api,
    connect,
    async hostile(n, fields) {
      const h = connect(n)
      h.register(fields)
      await until(`hostile agent ${n} to be live`, () => isLive(h.agentId))
      return h
    },
    async startHonest(labels = {}) {
      honest = await runAgent({ serverUrl: `127.0.0.1:${server.fleet!.port}`, token: server.fleet!.joinToken, dataDir: join(dir, 'agent'), local: fake, insecure: true, heartbeatMs: 100, labels })
      await until('the honest agent to be live', async () => {
        const agents = ((await (await api('/v1/agents')).json()) as { agents: { id: string; state: string; hostname: string }[] }).agents
        return agents.some((a) => a.hostname === 'fake' && a.state === 'live')
      })
    },
    async create(labels = {}) {
      const res = await api('/v1/sandboxes', { method: 'POST', body: JSON.stringify({ template: 'debian', labels }) })
      if (res.status !== 201) throw new Error(`create: ${res.status} ${await res.text()}`)
      return ((await res.json()) as { id: string }).id
    },
    async close() {
      for (const h of hostiles) h.close()
      await honest?.close()
      await server.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
