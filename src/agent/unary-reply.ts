/** How a remote agent answers one unary request of the server: its handler's result as JSON, or the error on the wire. */
import { maxLinkMessageBytes } from '../proto/index.js'
import type { ReplyMessage, RequestMessage, WireError } from '../proto/index.js'
import { SandstormError } from '../shared/index.js'
import type { CallOptions } from '../shared/index.js'
import { isLinkUnary } from './link-contract.js'
import type { UnaryHandlers } from './link-handlers.js'

/** The largest answer sent whole: the link's message limit, less room for the Reply around it. */
export const maxReplyJsonBytes = maxLinkMessageBytes - 64 * 1024

/** An error as the wire carries it: its code, message and whether a client may see the message; never its cause. */
export function toWire(err: unknown): WireError {
  const e = SandstormError.from(err)
  return { code: e.code, message: e.message, hidden: !e.expose }
}

/** The Reply to `req`; never rejects (a failure is the Reply's error). */
export async function answerUnary(handlers: UnaryHandlers, req: RequestMessage, signal: AbortSignal): Promise<ReplyMessage> {
  try {
    if (!isLinkUnary(req.kind)) throw new SandstormError('invalid_argument', `unknown request "${req.kind}"`)
    const handler = handlers[req.kind] as (input: unknown, o: CallOptions) => Promise<unknown>
    const resultJson = JSON.stringify((await handler(JSON.parse(req.payloadJson), { signal })) ?? null)
    // The server reads no larger message: one past it would end the whole link, not fail this call.
    const bytes = Buffer.byteLength(resultJson)
    if (bytes > maxReplyJsonBytes) throw new SandstormError('resource_exhausted', `the answer to ${req.kind} takes ${bytes} bytes: expected at most ${maxReplyJsonBytes} (the link's message limit)`)
    return { requestId: req.requestId, resultJson }
  } catch (err) {
    return { requestId: req.requestId, resultJson: '', error: toWire(err) }
  }
}
