import assert from 'node:assert/strict'
import { once } from 'node:events'
import { Agent, createServer, request, type ClientRequest, type IncomingMessage } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { maxJsonBytes } from './body-limits.js'
import { EdgeResponse } from './edge.js'
import { startTestServer, type RequestOptions, type TestServer } from './test-server.fixture.js'

const MiB = 1024 * 1024
const json = { 'content-type': 'application/json' }
/** `bytes` in 64 KiB chunks, sent without a declared length. */
const chunksOf = (bytes: number): Buffer[] => Array.from({ length: bytes / (64 * 1024) }, () => Buffer.alloc(64 * 1024, 0x20))

describe('an answer that goes out before its request has all arrived', () => {
  let t: TestServer
  let sandboxId: string
  before(async () => {
    t = await startTestServer({ maxFileBytes: MiB })
    sandboxId = (await t.request('POST', '/v1/sandboxes', { body: {} })).json.id as string
  })
  after(async () => {
    await t.close()
  })

  /** A request on the test server's keep-alive agent: its answer, read whole, and the socket it came on. */
  const onAgent = async (method: string, path: string, options: RequestOptions = {}): Promise<{ status: number; connection?: string; socket: Socket }> => {
    const res: IncomingMessage = await t.open(method, path, { ...options, keepAlive: true })
    const socket = res.socket
    for await (const _ of res) void _
    // The connection is free for the next request once all of this one is sent too (or it closed:
    // a body left unread stalls it, and the server closes it at its keep-alive timeout).
    const sent = (res as IncomingMessage & { req: ClientRequest }).req
    if (!sent.writableFinished) await Promise.race([once(sent, 'finish'), once(socket, 'close')])
    await new Promise((resolve) => setImmediate(resolve))
    return { status: res.statusCode ?? 0, ...(res.headers.connection ? { connection: res.headers.connection } : {}), socket }
  }

  it('reads and drops the rest of a body the route stopped reading, and the connection serves the next request', async () => {
    const json413 = await onAgent('POST', '/v1/sandboxes', { chunks: chunksOf(maxJsonBytes + 4 * MiB), headers: json })
    assert.deepEqual([json413.status, json413.connection], [413, 'keep-alive'])
    const next = await onAgent('GET', '/v1/sandboxes')
    assert.equal(next.status, 200)
    assert.equal(next.socket, json413.socket, 'the same connection')
    const file413 = await onAgent('PUT', `/v1/sandboxes/${sandboxId}/files?path=/tmp/big`, { chunks: chunksOf(4 * MiB) })
    assert.deepEqual([file413.status, file413.connection], [413, 'keep-alive'])
    assert.equal((await onAgent('GET', '/v1/sandboxes')).socket, file413.socket, 'the same connection')
  })

  it("answers fetch's streamed upload past the limit with its 413, and writes nothing", async () => {
    let sent = 0
    // 64 times the limit, far more than the sockets' buffers hold.
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 64 * MiB) return controller.close()
        sent += 256 * 1024
        controller.enqueue(new Uint8Array(256 * 1024))
      },
    })
    const res = await fetch(`${t.server.url}/v1/sandboxes/${sandboxId}/files?path=/tmp/big`, { method: 'PUT', body, duplex: 'half', headers: { authorization: `Bearer ${t.server.apiKey}` } } as RequestInit)
    assert.equal(res.status, 413)
    assert.match(((await res.json()) as { message: string }).message, /at most 1048576 bytes/)
    assert.equal(t.agent.sandboxes.get(sandboxId)!.files.has('/tmp/big'), false)
  })

  it('keeps it when no route began to read the body: Node reads the rest and drops it', async () => {
    // Refused on its declared length, before any of it is read.
    const declared = await onAgent('POST', '/v1/sandboxes', { body: Buffer.alloc(maxJsonBytes + 1, 0x20), headers: json })
    assert.deepEqual([declared.status, declared.connection], [413, 'keep-alive'])
    // Refused before its body is read (no key).
    const unauthenticated = await onAgent('POST', '/v1/sandboxes', { chunks: chunksOf(maxJsonBytes + 4 * MiB), headers: json, key: null })
    assert.deepEqual([unauthenticated.status, unauthenticated.connection], [401, 'keep-alive'])
    assert.equal((await onAgent('GET', '/v1/sandboxes')).socket, unauthenticated.socket, 'the same connection')
  })

  it('keeps a connection whose request was read whole', async () => {
    for (let i = 0; i < 3; i++) {
      const listed = await onAgent('GET', '/v1/sandboxes')
      assert.deepEqual([listed.status, listed.connection], [200, 'keep-alive'])
    }
    const bad = await onAgent('POST', '/v1/sandboxes', { body: { template: 7 } })
    assert.deepEqual([bad.status, bad.connection], [400, 'keep-alive'])
  })
})

describe("the edge's response", () => {
  it('closes the connection of a request whose body was destroyed part way: Node would leave the rest unread on it', async () => {
    const server = createServer({ ServerResponse: EdgeResponse }, async (req, res) => {
      let read = 0
      for await (const chunk of req) {
        read += (chunk as Buffer).byteLength
        if (read >= MiB) break // the iterator's return destroys the request
      }
      res.writeHead(413).end()
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    // A client that asks to keep its connection (one that did not would get "close" anyway).
    const agent = new Agent({ keepAlive: true })
    try {
      const answer = await new Promise<IncomingMessage>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, method: 'PUT', path: '/', agent })
        req.on('response', resolve).on('error', (err) => reject(err))
        for (const chunk of chunksOf(2 * MiB)) req.write(chunk)
        req.end()
      })
      answer.resume()
      assert.deepEqual([answer.statusCode, answer.headers.connection], [413, 'close'])
    } finally {
      agent.destroy()
      server.closeAllConnections()
      server.close()
    }
  })
})
