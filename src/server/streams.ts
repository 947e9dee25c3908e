import type { ExecEvent, Logger } from '../shared/index.js'

/** An iterator whose first item has already been read, so that its errors could still set the status. */
export interface Peeked<T> {
  first: IteratorResult<T>
  iterator: AsyncIterator<T>
}

/** Reads the first item: a stream that fails at once (not found, ...) then fails before any header is sent. */
export async function peek<T>(iterable: AsyncIterable<T>): Promise<Peeked<T>> {
  const iterator = iterable[Symbol.asyncIterator]()
  return { first: await iterator.next(), iterator }
}

/** The items of a peeked iterator, the first included. */
export async function* rest<T>({ first, iterator }: Peeked<T>): AsyncGenerator<T> {
  if (first.done) return
  yield first.value
  for (let r = await iterator.next(); !r.done; r = await iterator.next()) yield r.value
}

/** ExecEvents as NDJSON: one JSON object a line, each its own chunk so that it is flushed alone. */
export async function* ndjson(events: AsyncIterable<ExecEvent>): AsyncGenerator<Uint8Array> {
  const encoder = new TextEncoder()
  for await (const event of events) yield encoder.encode(`${JSON.stringify(event)}\n`)
}

/** Options of responseStream. */
export interface ResponseStreamOptions {
  /** Aborted here when the client cancels or the stream fails; the producer runs under `signal`. */
  stop: AbortController
  /** The producer's signal: `stop`'s, linked to the request's. */
  signal: AbortSignal
  logger: Logger
  context: Record<string, unknown>
}

/**
 * A web stream for a response body, pulled one chunk at a time (so a slow client slows the
 * producer). When the client goes away the body is cancelled: the producer's signal is aborted
 * and the iterator returned. An abort ends the body cleanly; any other failure after the headers
 * were sent can only cut the response short, so it is logged and the stream errors.
 */
export function responseStream(chunks: AsyncIterator<Uint8Array>, options: ResponseStreamOptions): ReadableStream<Uint8Array> {
  const { stop, signal, logger, context } = options
  let finished = false
  const finish = (): void => {
    if (finished) return
    finished = true
    stop.abort()
    // A generator parked in a pending next() finishes after the abort above; do not wait for it.
    void chunks.return?.().catch(() => {})
  }
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const r = await chunks.next()
        if (r.done) {
          finished = true
          controller.close()
        } else {
          controller.enqueue(r.value)
        }
      } catch (err) {
        const aborted = signal.aborted
        finish()
        if (aborted) return controller.close()
        logger.error({ ...context, err }, 'response stream failed after its headers were sent')
        controller.error(err)
      }
    },
    cancel() {
      finish()
    },
  })
}

/** A stop switch for one streamed response, and the producer's signal linked to the request's. */
export function streamSignal(requestSignal: AbortSignal): { stop: AbortController; signal: AbortSignal } {
  const stop = new AbortController()
  return { stop, signal: AbortSignal.any([requestSignal, stop.signal]) }
}

/** A 200 response streaming ExecEvents as NDJSON. */
export function ndjsonResponse(events: AsyncIterable<ExecEvent>, options: ResponseStreamOptions): Response {
  const body = responseStream(ndjson(events)[Symbol.asyncIterator](), options)
  return new Response(body, { status: 200, headers: { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' } })
}
