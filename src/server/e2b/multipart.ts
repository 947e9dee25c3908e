/**
 * A multipart/form-data upload read part by part as it arrives (busboy): each file part is a
 * stream handed on before the next one is read, so an upload of any size holds one chunk in
 * memory at a time. Past `maxFileBytes` in one part, or on a malformed body, the upload fails.
 */
import type { Readable } from 'node:stream'
import busboy from 'busboy'
import { SandstormError } from '../../shared/index.js'
import { capBytes } from '../body-limits.js'

/** One file part: its form name and filename, and its bytes (consume them before asking for the next part). */
export interface FilePart {
  name: string
  filename: string
  data: AsyncIterable<Uint8Array>
}

/** Limits of one upload. */
export interface MultipartLimits {
  maxFileBytes: number
  /** @default 1000 */
  maxFiles?: number
}

/** The file parts of `body`, in order; non-file fields are skipped (at most 64 KiB each). */
export async function* fileParts(body: Readable, contentType: string, limits: MultipartLimits): AsyncGenerator<FilePart> {
  let parser: busboy.Busboy
  try {
    // One byte over the limit lets the part's reader see that it was too large.
    // preservePath: E2B's SDK names each part with its whole path in the sandbox.
    parser = busboy({ headers: { 'content-type': contentType }, preservePath: true, limits: { fileSize: limits.maxFileBytes + 1, files: limits.maxFiles ?? 1000, fieldSize: 64 * 1024, parts: (limits.maxFiles ?? 1000) * 2 } })
  } catch (err) {
    throw new SandstormError('invalid_argument', `content-type: expected multipart/form-data with a boundary, got "${contentType}"`, { cause: err })
  }
  const queue: { part?: FilePart; error?: Error; done?: boolean }[] = []
  let wake: (() => void) | null = null
  const push = (item: (typeof queue)[number]) => {
    queue.push(item)
    wake?.()
  }
  parser.on('file', (name, stream, info) => {
    // A part not read yet when the upload ends (refused before its data) is destroyed with an
    // error: kept for a read, never thrown as an event nobody listens to.
    stream.on('error', () => undefined)
    push({ part: { name, filename: info.filename ?? '', data: capped(stream, limits.maxFileBytes) } })
  })
  parser.on('filesLimit', () => push({ error: new SandstormError('payload_too_large', `too many files in one upload: expected at most ${limits.maxFiles ?? 1000}`) }))
  parser.on('error', (err: Error) => push({ error: new SandstormError('invalid_argument', `malformed multipart body: ${err.message}`) }))
  parser.on('close', () => push({ done: true }))
  body.on('error', (err) => push({ error: err }))
  body.pipe(parser)
  try {
    for (;;) {
      while (queue.length === 0) await new Promise<void>((resolve) => (wake = resolve))
      wake = null
      const item = queue.shift()!
      if (item.error) throw item.error
      if (item.done) return
      yield item.part!
    }
  } finally {
    body.unpipe(parser)
    body.destroy()
    parser.destroy()
  }
}

/** A part's bytes, failing with 413 once more than `maxBytes` have come. */
async function* capped(stream: Readable, maxBytes: number): AsyncGenerator<Uint8Array> {
  try {
    yield* capBytes(stream, maxBytes)
  } finally {
    // A part left unread would stall the parser; drain what the reader did not take.
    stream.resume()
  }
}
