/**
 * A hand-driven agent on the fleet link, for tests: it holds a valid identity (an --insecure
 * server's token) and sends whatever a test tells it to, as a compromised agent host could.
 */
import * as grpc from '@grpc/grpc-js'
import { insecureHeaders, loadAgentLink, parseJoinToken } from '../../proto/index.js'
import type { AgentMessage, DataFrame, ServerMessage } from '../../proto/index.js'

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
  const ended = new Promise<{ code: grpc.status | 'end'; details: string }>((resolve) => {
    control.on('error', (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details }))
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
  return {
    agentId,
    asked,
    ended,
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
