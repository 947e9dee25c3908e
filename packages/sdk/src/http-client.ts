/** The SDK's only door to the HTTP API: auth, deadlines, error bodies, and bodies that never leak. */
import type { Connection } from './connection.js'
import { errorFromWire, type SandstormSdkError } from './errors.js'
import { chunksOf, isWebStream } from './ndjson.js'
import { createRequestScope, type RequestScope } from './request-scope.js'

/** Body types fetch can send; streams go out with `duplex: 'half'`. */
export type RequestBody = string | Uint8Array | Blob | ReadableStream<Uint8Array>

/** One request to the API. */
export interface ApiRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  /** Path under the base URL, e.g. `/v1/sandboxes`. */
  path: string
  /** Query parameters; an array repeats the key. */
  query?: Record<string, string | string[] | undefined>
  /** A JSON body. */
  json?: unknown
  /** A raw body (sent as `contentType`). */
  body?: RequestBody
  /** @default 'application/octet-stream' */
  contentType?: string
  signal?: AbortSignal
}

/** Calls of the HTTP API with every answer read or cancelled, so that no connection is left open. */
export interface ApiClient {
  readonly connection: Connection
  /** Sends a request and parses its JSON answer. */
  json<T>(req: ApiRequest): Promise<T>
  /** As `json`, with the answer's headers (a page's `X-Next-Token`). */
  jsonAndHeaders<T>(req: ApiRequest): Promise<{ value: T; headers: Headers }>
  /** Sends a request whose answer has no body worth reading (204). */
  send(req: ApiRequest): Promise<void>
  /** Sends a request and hands over its streamed answer; cancel it to stop early. */
  stream(req: ApiRequest): Promise<ReadableStream<Uint8Array>>
  /**
   * As `stream`, as chunks to iterate; breaking out of the loop closes the answer. Where the fetch
   * answers with an async iterable body (a Node stream), no web stream is made.
   */
  chunks(req: ApiRequest): Promise<AsyncIterable<Uint8Array>>
}

const userAgent = 'sandstorm-sdk/0.1'

/** A client over a resolved connection. */
export function createApiClient(connection: Connection): ApiClient {
  async function open(req: ApiRequest): Promise<{ res: Response; scope: RequestScope }> {
    const what = `${req.method} ${req.path}`
    const headers: Record<string, string> = { authorization: `Bearer ${connection.apiKey()}`, 'user-agent': userAgent }
    let body: RequestBody | undefined
    if (req.json !== undefined) {
      headers['content-type'] = 'application/json'
      body = JSON.stringify(req.json)
    } else if (req.body !== undefined) {
      headers['content-type'] = req.contentType ?? 'application/octet-stream'
      body = req.body
    }
    const scope = createRequestScope(what, connection.apiUrl, req.signal, connection.requestTimeoutMs)
    let res: Response
    try {
      const init: RequestInit & { duplex?: 'half' } = { method: req.method, headers, body: body as BodyInit | undefined, signal: scope.signal }
      if (isWebStream(body)) {
        init.duplex = 'half'
        // Following a redirect would mean sending the body again, so fetch keeps every chunk it
        // sent in memory; the API never redirects, and a 100 MB upload must not sit in memory.
        init.redirect = 'error'
      }
      const send = connection.fetch
      res = await send(urlOf(connection.apiUrl, req), init)
    } catch (err) {
      scope.release()
      throw scope.translate(err)
    }
    if (!res.ok) {
      let text = ''
      try {
        text = await res.text()
      } catch (err) {
        throw scope.translate(err)
      } finally {
        scope.release()
      }
      throw errorFromBody(res.status, res.statusText, text)
    }
    return { res, scope }
  }

  async function jsonAndHeaders<T>(req: ApiRequest): Promise<{ value: T; headers: Headers }> {
    const { res, scope } = await open(req)
    try {
      return { value: (await res.json()) as T, headers: res.headers }
    } catch (err) {
      throw scope.translate(err)
    } finally {
      scope.release()
    }
  }

  const chunks = async (req: ApiRequest): Promise<AsyncIterable<Uint8Array>> => {
    const { res, scope } = await open(req)
    scope.endDeadline()
    return guardChunks(res.body as ByteBody | null, scope)
  }

  return {
    connection,
    json: async <T>(req: ApiRequest): Promise<T> => (await jsonAndHeaders<T>(req)).value,
    jsonAndHeaders,
    async send(req: ApiRequest): Promise<void> {
      const { res, scope } = await open(req)
      try {
        // Reading the (usually empty) body returns the connection to the pool.
        await res.arrayBuffer()
      } catch (err) {
        throw scope.translate(err)
      } finally {
        scope.release()
      }
    },
    stream: async (req: ApiRequest): Promise<ReadableStream<Uint8Array>> => webStreamOf(await chunks(req)),
    chunks,
  }
}

/** A response body as fetch gives it: a web stream, or an async iterable where the fetch is one over node:http. */
type ByteBody = ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>

/** Yields a body's chunks, translating its errors and releasing the scope once it ends, fails or is left. */
async function* guardChunks(body: ByteBody | null, scope: RequestScope): AsyncGenerator<Uint8Array, void, undefined> {
  try {
    if (body) yield* chunksOf(body, scope.signal)
  } catch (err) {
    throw scope.translate(err)
  } finally {
    scope.release()
  }
}

function urlOf(base: string, req: ApiRequest): string {
  const url = new URL(base + req.path)
  for (const [k, v] of Object.entries(req.query ?? {})) {
    if (v === undefined) continue
    for (const one of Array.isArray(v) ? v : [v]) url.searchParams.append(k, one)
  }
  return url.toString()
}

/** The body of an error answer, `{ code, message }`, or whatever came instead. */
export function errorFromBody(status: number, statusText: string, text: string): SandstormSdkError {
  try {
    const parsed = JSON.parse(text) as { code?: unknown; message?: unknown }
    if (parsed && typeof parsed.message === 'string') {
      return errorFromWire(status, typeof parsed.code === 'string' ? parsed.code : undefined, parsed.message)
    }
  } catch {
    // Not JSON: a proxy or a server that is not Sandstorm answered.
  }
  const snippet = text.trim().slice(0, 200)
  return errorFromWire(status, undefined, `the server answered ${status} ${statusText}${snippet ? `: ${snippet}` : ''}`)
}

/** The chunks as a web stream, read as they are pulled; a cancel leaves the iteration (releasing its request). */
function webStreamOf(chunks: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const it = chunks[Symbol.asyncIterator]()
  return new ReadableStream<Uint8Array>(
    {
      // A rejection (already an SDK error) errors the stream.
      async pull(controller) {
        const { done, value } = await it.next()
        if (done) controller.close()
        else controller.enqueue(value)
      },
      async cancel() {
        await it.return?.()
      },
    },
    { highWaterMark: 0 },
  )
}
