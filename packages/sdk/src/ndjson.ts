/** Newline-delimited JSON from a byte stream, robust to lines and characters split across chunks. */
import { SandstormSdkError } from './errors.js'

/** A line longer than this is not an event of ours; stop rather than buffer without end. */
const maxLineChars = 16 * 1024 * 1024

/** Anything that yields byte chunks. */
export type ByteSource = ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>

/**
 * Yields one parsed value per non-empty line. Breaking out of the loop cancels the source, so
 * the connection under it is closed.
 */
export async function* parseNdjson<T>(source: ByteSource): AsyncGenerator<T, void, undefined> {
  const decoder = new TextDecoder('utf-8', { fatal: false })
  let buffered = ''
  for await (const chunk of chunksOf(source)) {
    buffered += decoder.decode(chunk, { stream: true })
    let newline: number
    while ((newline = buffered.indexOf('\n')) !== -1) {
      const line = buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
      const value = parseLine<T>(line)
      if (value !== undefined) yield value
    }
    if (buffered.length > maxLineChars) {
      throw new SandstormSdkError('internal', `the server sent a stream line longer than ${maxLineChars} characters`)
    }
  }
  buffered += decoder.decode()
  const last = parseLine<T>(buffered)
  if (last !== undefined) yield last
}

function parseLine<T>(line: string): T | undefined {
  const trimmed = line.trim()
  if (trimmed === '') return undefined
  try {
    return JSON.parse(trimmed) as T
  } catch {
    throw new SandstormSdkError('internal', `expected one JSON value per line from the server, got: ${trimmed.slice(0, 120)}`)
  }
}

/**
 * A web stream, told by its reader rather than by `instanceof ReadableStream`: in Node, reading that
 * global loads the web streams implementation, which a client that never makes one need not pay.
 */
export function isWebStream(source: unknown): source is ReadableStream<Uint8Array> {
  return typeof (source as { getReader?: unknown } | null)?.getReader === 'function'
}

/**
 * Iterates a web stream through its reader (cancelled on early exit) or any async iterable. With
 * `signal`, an abort ends a read in progress at once, with the signal's reason: fetch does not
 * always (undici, answering a request whose body was a stream, read on until its body timeout of
 * 5 minutes, the connection open and the server's work going on).
 */
export async function* chunksOf(source: ByteSource, signal?: AbortSignal): AsyncGenerator<Uint8Array, void, undefined> {
  if (!isWebStream(source)) {
    const destroy = (source as { destroy?: (err?: unknown) => void }).destroy
    const onAbort = () => destroy?.call(source, signal!.reason)
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      yield* source
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
    return
  }
  const reader = source.getReader()
  let finished = false
  // A cancel resolves the read waiting on it (done), and closes the connection under it.
  const onAbort = () => void reader.cancel(signal!.reason).catch(() => undefined)
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    for (;;) {
      const { done, value } = await reader.read()
      signal?.throwIfAborted()
      if (done) {
        finished = true
        return
      }
      yield value
    }
  } catch (err) {
    finished = true
    throw err
  } finally {
    signal?.removeEventListener('abort', onAbort)
    if (!finished) await reader.cancel().catch(() => undefined)
    reader.releaseLock()
  }
}
