/** One connected agent's Control stream seen from the server: requests out, replies and Data streams in. */
import type * as grpc from '@grpc/grpc-js'
import { parseLinkReply } from '../../agent/index.js'
import type { LinkData, LinkDataName, LinkUnary, LinkUnaryName } from '../../agent/index.js'
import type { DataFrame, ReplyMessage, ServerMessage } from '../../proto/index.js'
import { httpStatusOf, linkSignal, SandstormError, throwIfAborted } from '../../shared/index.js'
import type { CallOptions, ErrorCode } from '../../shared/index.js'

/** Spare Data streams kept per agent (agents keep 4 open ahead); more are ended at once. */
export const maxSpares = 16

/** A Data stream the agent opened for one request. */
export type DataCall = grpc.ServerDuplexStream<DataFrame, DataFrame>

/** Calls to one agent over its link. */
export interface AgentConnection {
  readonly agentId: string
  /** A call answered on Control, typed by the link's contract. */
  call<K extends LinkUnaryName>(kind: K, input: LinkUnary[K]['input'], options?: CallOptions): Promise<LinkUnary[K]['output']>
  /** A call answered on a Data stream that the agent opens (or a spare it opened ahead); resolves with that stream. */
  openData<K extends LinkDataName>(kind: K, input: LinkData[K], options?: CallOptions): Promise<DataCall>
  onReply(reply: ReplyMessage): void
  /** Hands a Data stream to the request its first frame names; false when no request waits for it. */
  onData(requestId: number, stream: DataCall): boolean
  /** Keeps a Data stream the agent opened ahead of need (first frame with request id 0) for a later openData. */
  offerSpare(stream: DataCall): void
  /** Fails every pending request (the link is gone) and refuses new ones. */
  fail(err: SandstormError): void
}

/** The error a wire error stands for; a code that is none of ours (an agent's say-so) is an internal error, hidden. */
export function fromWire(err: { code: string; message: string; hidden?: boolean }): SandstormError {
  if (!Object.hasOwn(httpStatusOf, err.code)) return new SandstormError('internal', `an agent answered with the unknown error code ${JSON.stringify(String(err.code).slice(0, 40))}: ${err.message}`, { expose: false })
  return new SandstormError(err.code as ErrorCode, err.message, { expose: !err.hidden })
}

/** A caller waiting for its answer. */
interface Waiter {
  resolve(value: unknown): void
  reject(err: unknown): void
}

/** A connection that writes requests with `send`; `cut` ends the stream once the connection fails (the agent then reconnects). */
export function createAgentConnection(agentId: string, send: (msg: ServerMessage) => void, cut: () => void = () => undefined): AgentConnection {
  let nextId = 1
  let failed: SandstormError | undefined
  // Apart, so that an answer of one kind never settles a request of the other: a Data stream
  // naming a unary request once resolved it with a stream, a Reply to a Data request with JSON.
  const unary = new Map<number, Waiter & { kind: LinkUnaryName }>()
  const data = new Map<number, Waiter>()

  function request<T>(kind: string, payload: unknown, onData: boolean, options: CallOptions = {}): Promise<T> {
    if (failed) return Promise.reject(failed)
    const signal = linkSignal(options)
    try {
      throwIfAborted(signal)
    } catch (err) {
      return Promise.reject(err)
    }
    const requestId = nextId++
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        unary.delete(requestId)
        data.delete(requestId)
        send({ cancel: { requestId } })
        try {
          throwIfAborted(signal)
        } catch (err) {
          reject(err)
        }
      }
      const done = (): void => signal?.removeEventListener('abort', onAbort)
      const waiter: Waiter = {
        resolve: (v) => (done(), resolve(v as T)),
        reject: (e) => (done(), reject(e)),
      }
      if (onData) data.set(requestId, waiter)
      else unary.set(requestId, { ...waiter, kind: kind as LinkUnaryName })
      signal?.addEventListener('abort', onAbort, { once: true })
      send({ request: { requestId, kind, payloadJson: JSON.stringify(payload ?? null), data: onData } })
    })
  }

  const spares: DataCall[] = []
  /** A spare stream still open, or undefined. */
  const takeSpare = (): DataCall | undefined => {
    for (let spare = spares.shift(); spare; spare = spares.shift()) if (!spare.cancelled && !spare.destroyed && !spare.writableEnded) return spare
    return undefined
  }

  return {
    agentId,
    call: (kind, input, options) => request(kind, input, false, options),
    openData(kind, payload, options) {
      const spare = failed ? undefined : takeSpare()
      if (!spare) return request<DataCall>(kind, payload, true, options)
      try {
        throwIfAborted(linkSignal(options ?? {}))
      } catch (err) {
        spares.unshift(spare)
        return Promise.reject(err)
      }
      // The request goes down the stream itself; the agent answers on it.
      spare.write({ requestId: nextId++, json: JSON.stringify({ kind, payloadJson: JSON.stringify(payload ?? null) }) })
      return Promise.resolve(spare)
    },
    offerSpare(stream) {
      if (failed) return void stream.end()
      // Agents keep a few open ahead of need; past that, a stream is an agent's way to hold the server's memory.
      for (let i = spares.length - 1; i >= 0; i--) if (spares[i]!.cancelled || spares[i]!.destroyed || spares[i]!.writableEnded) spares.splice(i, 1)
      if (spares.length >= maxSpares) return void stream.end()
      spares.push(stream)
    },
    onReply(reply) {
      const waiter = unary.get(reply.requestId)
      if (!waiter) return
      unary.delete(reply.requestId)
      if (reply.error?.code) return waiter.reject(fromWire(reply.error))
      // Checked against the contract here, once for every caller; a bad answer fails its caller only.
      let result: unknown
      try {
        result = parseLinkReply(agentId, waiter.kind, reply.resultJson)
      } catch (err) {
        return waiter.reject(err)
      }
      waiter.resolve(result)
    },
    onData(requestId, stream) {
      const waiter = data.get(requestId)
      if (!waiter) return false
      data.delete(requestId)
      waiter.resolve(stream)
      return true
    },
    fail(err) {
      const first = failed === undefined
      failed ??= err
      for (const waiter of [...unary.values(), ...data.values()]) waiter.reject(err)
      unary.clear()
      data.clear()
      for (let spare = spares.shift(); spare; spare = spares.shift()) if (!spare.writableEnded && !spare.destroyed) spare.end()
      // A silent agent declared lost may still be connected: cut the link so that it registers afresh.
      if (first) cut()
    },
  }
}
