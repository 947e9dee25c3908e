/**
 * The fetch the SDK uses under Node for `http:` URLs: plain http on node:http and its keep-alive
 * agent. Node 20's global fetch is undici: its first call compiles a WebAssembly HTTP parser (some
 * 250 ms of CPU in every new process), and each later request costs about 0.6 ms more than one on
 * node:http over loopback, a tenth of a tree-search snapshot. Everywhere else (browsers, Bun, Deno,
 * Node before 20.16, `https:` URLs) the global fetch is used.
 *
 * It answers with what the SDK reads of a Response (ok, status, statusText, headers.get, body,
 * text, json, arrayBuffer) and fails as undici does (a TypeError 'fetch failed' with the socket's
 * error as cause), so the SDK's error mapping holds. The body is the answer's Node stream, which the
 * SDK reads as an AsyncIterable<Uint8Array>. Node's modules are looked up at run time
 * (`process.getBuiltinModule`), so that the main entry imports none and still bundles for browsers.
 */
import type * as NodeHttp from 'node:http'
import type * as NodeStream from 'node:stream'
import { concatBytes } from './bytes.js'

interface NodeModules {
  http: typeof NodeHttp
  stream: typeof NodeStream
}

type NodeProcess = { versions?: Record<string, string | undefined>; getBuiltinModule?: (id: string) => unknown }

/** node:http and node:stream where this is Node itself (Bun and Deno have their own fast fetch). */
function nodeModules(): NodeModules | undefined {
  const proc = (globalThis as { process?: NodeProcess }).process
  const versions = proc?.versions
  if (!proc?.getBuiltinModule || !versions?.node || versions.bun || versions.deno) return undefined
  const http = proc.getBuiltinModule('node:http') as typeof NodeHttp | undefined
  const stream = proc.getBuiltinModule('node:stream') as typeof NodeStream | undefined
  return http && stream ? { http, stream } : undefined
}

/** The fetch a connection uses unless given one: over node:http under Node, the global fetch elsewhere. */
export function defaultFetch(): typeof fetch {
  const node = nodeModules()
  // Read at each call, so that a fetch set up later (a polyfill, a test's stand-in) is the one used.
  return node ? nodeHttpFetch(node) : (input, init) => globalThis.fetch(input, init)
}

/**
 * A fetch over node:http for http URLs, the global fetch otherwise. Its connections are its own
 * (kept alive, as undici's are), not those of Node's global agent, which the rest of the process
 * shares: a request of the program's own that left a socket in a bad state (an upload cut off by
 * an early answer, say) is never the next SDK call's, nor do its agent's settings apply here.
 */
function nodeHttpFetch({ http, stream }: NodeModules): typeof fetch {
  // Free sockets go after 5 s idle, or a second before the server's Keep-Alive timeout says it drops them.
  const agent = new http.Agent({ keepAlive: true, scheduling: 'lifo', timeout: 5000 })
  return async (input, init = {}) => {
    // (No `instanceof Request`: touching Request loads undici.) The SDK passes a URL string.
    if (typeof input !== 'string' && !(input instanceof URL)) return fetch(input, init)
    const url = new URL(input)
    if (url.protocol !== 'http:') return fetch(input, init)
    const signal = init.signal ?? undefined
    signal?.throwIfAborted()
    const headers: Record<string, string> = { ...(init.headers as Record<string, string> | undefined) }
    const body = await bytesOf(init.body)
    if (body !== undefined) headers['content-length'] = String(body.byteLength)
    return new Promise<Response>((resolve, reject) => {
      const req = http.request(url, { method: init.method ?? 'GET', headers, signal, agent })
      req.on('error', (err) => reject(signal?.aborted ? signal.reason : new TypeError('fetch failed', { cause: err })))
      req.on('response', (res) => resolve(responseOf(res, signal)))
      if (isWebStream(init.body)) {
        const source = stream.Readable.fromWeb(init.body as import('node:stream/web').ReadableStream<Uint8Array>)
        source.on('error', (err) => req.destroy(err))
        source.pipe(req)
      } else {
        req.end(body)
      }
    })
  }
}

/** A body the SDK sends whole (JSON, bytes, a Blob), as bytes; a stream is piped instead. */
async function bytesOf(body: RequestInit['body']): Promise<Uint8Array | undefined> {
  if (typeof body === 'string') return new TextEncoder().encode(body)
  if (body === undefined || body === null || isWebStream(body)) return undefined
  if (body instanceof Uint8Array) return body
  if (body instanceof Blob) return new Uint8Array(await body.arrayBuffer())
  throw new TypeError(`the SDK's fetch over node:http sends a string, bytes, a Blob or a stream, got ${Object.prototype.toString.call(body)}`)
}

/** A web stream, told without reading the ReadableStream global (that loads Node's web streams). */
function isWebStream(body: unknown): body is ReadableStream<Uint8Array> {
  return typeof (body as { getReader?: unknown } | null)?.getReader === 'function'
}

/** A body read as chunks, and destroyed (a cancel, the caller's signal) as the Node stream it is. */
type NodeBody = AsyncIterable<Uint8Array> & { destroy(err?: unknown): void }

/**
 * The answer's chunks. A connection that dies mid-body (a server killed, say) fails Node's stream
 * with Error('aborted') or ECONNRESET; it fails here as in undici, with TypeError('terminated') and
 * that error as its cause, which the SDK reports as a dropped connection (retryable). An end by
 * the request's own signal fails with the signal's reason.
 */
function bodyOf(res: NodeHttp.IncomingMessage, signal: AbortSignal | undefined): NodeBody {
  return {
    async *[Symbol.asyncIterator]() {
      try {
        for await (const chunk of res) yield chunk as Uint8Array
      } catch (err) {
        if (signal?.aborted) throw signal.reason
        throw new TypeError('terminated', { cause: err })
      }
    },
    destroy: (err) => res.destroy(err instanceof Error ? err : undefined),
  }
}

function responseOf(res: NodeHttp.IncomingMessage, signal: AbortSignal | undefined): Response {
  const status = res.statusCode ?? 0
  const body = bodyOf(res, signal)
  const bytes = async (): Promise<Uint8Array> => {
    const chunks: Uint8Array[] = []
    for await (const chunk of body) chunks.push(chunk)
    return concatBytes(chunks)
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
    text: async () => new TextDecoder().decode(await bytes()),
    json: async () => JSON.parse(new TextDecoder().decode(await bytes())) as unknown,
    arrayBuffer: async () => {
      const b = await bytes()
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)
    },
  }
  return response as unknown as Response
}
