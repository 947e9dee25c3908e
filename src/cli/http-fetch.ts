/**
 * The fetch the CLI hands the SDK: plain http on node:http. Node 20's global fetch is undici,
 * whose first call compiles its WebAssembly HTTP parser, some 250 ms of CPU that each one-request
 * command paid. It answers with what the SDK reads of a Response (ok, status, statusText,
 * headers.get, body, text, json, arrayBuffer) and fails as undici does (a TypeError 'fetch failed'
 * with the socket's error as cause), so the SDK's error mapping holds. The body is the Node stream
 * of the answer, which the SDK takes as an AsyncIterable<Uint8Array> (ConnectionOptions.fetch):
 * a web stream over it would load Node's web streams, some 5 ms of every start.
 * https URLs go to the global fetch.
 */
import type { IncomingMessage } from 'node:http'
import { Readable } from 'node:stream'

/** A fetch over node:http for http URLs, the global fetch otherwise. */
export const httpFetch: typeof fetch = async (input, init = {}) => {
  // (No `instanceof Request`: touching Request loads undici.) The SDK passes a URL string.
  if (typeof input !== 'string' && !(input instanceof URL)) return fetch(input, init)
  const url = new URL(input)
  if (url.protocol !== 'http:') return fetch(input, init)
  const signal = init.signal ?? undefined
  signal?.throwIfAborted()
  const headers: Record<string, string> = { ...(init.headers as Record<string, string> | undefined) }
  const body = await bytesOf(init.body)
  if (body !== undefined) headers['content-length'] = String(body.byteLength)
  const { request } = await import('node:http')
  return new Promise<Response>((resolve, reject) => {
    const req = request(url, { method: init.method ?? 'GET', headers, signal })
    req.on('error', (err) => reject(signal?.aborted ? signal.reason : new TypeError('fetch failed', { cause: err })))
    req.on('response', (res) => resolve(responseOf(res)))
    if (isWebStream(init.body)) {
      const source = Readable.fromWeb(init.body as import('node:stream/web').ReadableStream<Uint8Array>)
      source.on('error', (err) => req.destroy(err))
      source.pipe(req)
    } else {
      req.end(body)
    }
  })
}

/** A body the SDK sends whole (JSON, bytes, a Blob), as bytes; a stream is piped instead. */
async function bytesOf(body: RequestInit['body']): Promise<Uint8Array | undefined> {
  if (typeof body === 'string') return Buffer.from(body)
  if (body === undefined || body === null || isWebStream(body)) return undefined
  if (body instanceof Uint8Array) return body
  if (body instanceof Blob) return new Uint8Array(await body.arrayBuffer())
  throw new TypeError(`the CLI's fetch sends a string, bytes, a Blob or a stream, got ${Object.prototype.toString.call(body)}`)
}

/** A web stream, told without reading the ReadableStream global (that loads Node's web streams). */
function isWebStream(body: unknown): body is ReadableStream<Uint8Array> {
  return typeof (body as { getReader?: unknown } | null)?.getReader === 'function'
}

function responseOf(res: IncomingMessage): Response {
  const status = res.statusCode ?? 0
  // A socket that dies mid-body fails the stream with ECONNRESET, which the SDK maps as undici's.
  const body: AsyncIterable<Uint8Array> = res
  const bytes = async (): Promise<Buffer> => {
    const chunks: Uint8Array[] = []
    for await (const chunk of body) chunks.push(chunk)
    return Buffer.concat(chunks)
  }
  const response = {
    ok: status >= 200 && status < 300,
    status,
    statusText: res.statusMessage ?? '',
    headers: {
      get: (name: string): string | null => {
        const value = res.headers[name.toLowerCase()]
        return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value
      },
    },
    body,
    text: async () => (await bytes()).toString('utf8'),
    json: async () => JSON.parse((await bytes()).toString('utf8')) as unknown,
    arrayBuffer: async () => {
      const b = await bytes()
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)
    },
  }
  return response as unknown as Response
}
