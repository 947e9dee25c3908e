import { SandstormError } from '../shared/index.js'

/**
 * How much of a request the server reads whole. JSON bodies (and each Connect message) are
 * parsed in memory, so they are capped: 8 MiB leaves room for an exec's stdin given inline
 * (base64); larger input goes through the stdin route. Files never count here: PUT .../files and
 * E2B's POST /files stream to the sandbox under the server's file limit (`maxFileBytes`).
 */
export const maxJsonBytes = 8 * 1024 * 1024

/**
 * The routes whose bodies stream under their own limits (files to a sandbox, the tar of an image
 * build): by method and whole path, so that a name a client picks (a pool for a template called
 * "files") never makes another route's body unbounded.
 */
const uploadRoutes: { method: string; path: RegExp; contentType?: RegExp }[] = [
  { method: 'PUT', path: /^\/v1\/sandboxes\/[^/]+\/files$/ },
  { method: 'POST', path: /^\/files$/ },
  { method: 'PUT', path: /^\/templates\/[^/]+\/uploads\/[^/]+\/files$/ },
  { method: 'POST', path: /^\/v1\/templates\/[^/]+\/build$/, contentType: /^application\/x-tar/ },
]

/** Is this request an upload, whose body its route streams under its own limit? */
export function isUploadRoute(method: string, path: string, contentType: string): boolean {
  return uploadRoutes.some((r) => r.method === method && r.path.test(path) && (r.contentType === undefined || r.contentType.test(contentType)))
}

/** Does the server read this request's body whole (as JSON), so that the JSON limit applies? */
export function readsBodyWhole(method: string, path: string, contentType: string): boolean {
  return (method === 'POST' || method === 'PUT' || method === 'PATCH') && !isUploadRoute(method, path, contentType)
}

/** The error of a JSON body past its bound. */
export function jsonTooLarge(maxBytes = maxJsonBytes): SandstormError {
  return new SandstormError('payload_too_large', `request body too large: expected at most ${maxBytes} bytes of JSON`)
}

/**
 * A body as text, failing with 413 once more than `maxBytes` have come: the route's own bound,
 * whatever middleware ran before it. A UTF-8 BOM is dropped, as Response.text() does.
 */
export async function boundedText(body: AsyncIterable<Uint8Array> | null, maxBytes = maxJsonBytes): Promise<string> {
  if (!body) return ''
  const chunks: Uint8Array[] = []
  for await (const chunk of capBytes(body, maxBytes, () => jsonTooLarge(maxBytes))) chunks.push(chunk)
  return new TextDecoder().decode(Buffer.concat(chunks))
}

/**
 * The bytes of a stream, failing with 413 (`tooLarge`, a file's by default) once more than
 * `maxBytes` have come (count after any gunzip, so that a small bomb is cut off too).
 */
export async function* capBytes(
  stream: AsyncIterable<Uint8Array>,
  maxBytes: number,
  tooLarge = () => new SandstormError('payload_too_large', `file too large: expected at most ${maxBytes} bytes in one file`),
): AsyncGenerator<Uint8Array> {
  let total = 0
  for await (const chunk of stream) {
    total += chunk.byteLength
    if (total > maxBytes) throw tooLarge()
    yield chunk
  }
}
