/**
 * envd streams that end the way E2B's end when their sandbox dies: the connection drops in the
 * middle of the response, with no end-of-stream message. An error thrown in a Connect handler
 * becomes a tidy error message instead, so a handler that sees its sandbox go asks for the cut
 * through the call's context values, and the HTTP response body errors under the server adapter,
 * which then destroys the socket. The SDK reads that as a dropped connection, asks `/health`,
 * hears 502, and raises its TimeoutError ("the sandbox was killed or reached its end of life").
 */
import { createContextKey, createContextValues } from '@connectrpc/connect'
import type { HandlerContext } from '@connectrpc/connect'
import { universalServerRequestFromFetch, universalServerResponseToFetch } from '@connectrpc/connect/protocol'
import type { UniversalHandler } from '@connectrpc/connect/protocol'

/** The cut of one call's HTTP response. */
interface Severance {
  sever(reason: Error): void
}

const severanceKey = createContextKey<Severance | undefined>(undefined, { description: "the cut of an envd call's response" })

/** Drops the connection of the call `ctx` answers, mid-response; a call served without a cut (in-memory tests) is left as it is. */
export function severCall(ctx: HandlerContext, reason: Error): void {
  ctx.values.get(severanceKey)?.sever(reason)
}

/** A fetch handler for `handler` whose response body can be cut by `severCall`. */
export function severableFetchHandler(handler: UniversalHandler): (req: Request) => Promise<Response> {
  return async (req) => {
    let cut: (reason: Error) => void = () => undefined
    let severed: Error | undefined
    const contextValues = createContextValues().set(severanceKey, {
      sever(reason) {
        severed ??= reason
        cut(reason)
      },
    })
    const res = universalServerResponseToFetch(await handler({ ...universalServerRequestFromFetch(req, {}), contextValues }))
    if (!res.body) return res
    const reader = res.body.getReader()
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        cut = (reason) => {
          controller.error(reason)
          reader.cancel(reason).catch(() => undefined)
        }
        if (severed) cut(severed)
      },
      async pull(controller) {
        const next = await reader.read().catch((err: unknown) => ({ error: err }))
        if (severed) return
        if ('error' in next) return controller.error(next.error)
        if (next.done) controller.close()
        else controller.enqueue(next.value)
      },
      cancel: (reason) => reader.cancel(reason),
    })
    return new Response(body, { status: res.status, headers: res.headers })
  }
}
