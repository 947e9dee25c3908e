/**
 * A request's body as the routes read it. A route may stop part way (a JSON body past its cap, a
 * file past the limit, an upload to a sandbox that is gone) and answer at once. The rest is then
 * read and dropped, as Node does with a body no route touched: the client finishes sending, reads
 * the answer, and its connection serves the next request. Destroyed instead, the request would
 * leave the rest unread on a kept-alive connection (edge.ts closes those), and a client still
 * sending when the connection closes may see it reset.
 */
import type { IncomingMessage } from 'node:http'
import type { Context } from 'hono'
import type { ServerEnv } from './context.js'

/** How much of a body a route stopped reading is still read and dropped; past either, the connection is cut. */
export interface DropLimits {
  /** @default 1 GiB */
  maxBytes: number
  /** @default 30 s (nginx's lingering time) */
  maxMs: number
}

const defaultDropLimits: DropLimits = { maxBytes: 1024 ** 3, maxMs: 30_000 }

/**
 * The body: under the Node server the Node request itself (no web stream is made over it), which
 * a reader that stops early leaves to be read to its end and dropped; in memory (unit tests) the
 * web body. Null when there is none.
 */
export function requestBody(c: Context<ServerEnv>, limits: DropLimits = defaultDropLimits): AsyncIterable<Uint8Array> | null {
  const incoming = c.env?.incoming
  if (!incoming) return c.req.raw.body as AsyncIterable<Uint8Array> | null
  // HTTP/1.1: a request with neither header has no body.
  if (incoming.headers['content-length'] === undefined && incoming.headers['transfer-encoding'] === undefined) return null
  return readThenDrop(incoming, limits)
}

async function* readThenDrop(incoming: IncomingMessage, limits: DropLimits): AsyncGenerator<Uint8Array> {
  let ended = false
  try {
    // Not destroyed when the reader stops: Node would then leave the rest unread.
    for await (const chunk of incoming.iterator({ destroyOnReturn: false })) yield chunk as Uint8Array
    ended = true
  } finally {
    if (!ended) dropRest(incoming, limits)
  }
}

/** Reads what is left of `incoming` and drops it, up to `limits`; past them its connection is cut. */
function dropRest(incoming: IncomingMessage, limits: DropLimits): void {
  if (incoming.complete || incoming.destroyed) return
  const socket = incoming.socket
  let dropped = 0
  const cut = (): void => {
    done()
    socket.destroy()
  }
  const onData = (chunk: Buffer): void => {
    dropped += chunk.byteLength
    if (dropped > limits.maxBytes) cut()
  }
  const timer = setTimeout(cut, limits.maxMs)
  timer.unref()
  const done = (): void => {
    clearTimeout(timer)
    incoming.off('data', onData)
  }
  incoming.on('data', onData)
  incoming.once('end', done)
  incoming.once('close', done)
  incoming.resume()
}
