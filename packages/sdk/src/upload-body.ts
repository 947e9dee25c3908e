/** Turning what a caller may write into a body fetch can stream. */
import type { RequestBody } from './http-client.js'

/** Data that `files.write` accepts. */
export type WriteData = string | Uint8Array | ArrayBuffer | Blob | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>

/** A fetch body for the data; streams stay streams, so large files never sit in memory. */
export function uploadBodyOf(data: WriteData): RequestBody {
  if (typeof data === 'string' || data instanceof Uint8Array || data instanceof Blob || data instanceof ReadableStream) return data
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  if (data && typeof (data as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === 'function') return streamOf(data)
  throw new TypeError(`expected string, Uint8Array, ArrayBuffer, Blob, ReadableStream or AsyncIterable<Uint8Array>, got ${typeof data}`)
}

/** Is this body read as it is sent (so a slow upload is no sign of a dead server)? */
export function isStreamedBody(body: RequestBody): boolean {
  return body instanceof ReadableStream || body instanceof Blob
}

/** A pull-based stream over an async iterable: one chunk is read only when fetch asks for it. */
function streamOf(source: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const it = source[Symbol.asyncIterator]()
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const { done, value } = await it.next()
        if (done) controller.close()
        else controller.enqueue(value instanceof Uint8Array ? value : new Uint8Array(value))
      },
      async cancel() {
        await it.return?.()
      },
    },
    { highWaterMark: 0 },
  )
}
