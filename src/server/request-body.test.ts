import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { Context } from 'hono'
import type { ServerEnv } from './context.js'
import { requestBody, type DropLimits } from './request-body.js'

describe('a body a route stopped reading', () => {
  let limits: DropLimits
  let server: Server
  let port: number
  before(async () => {
    // A route that reads the first chunk of the body, stops, and refuses it.
    server = createServer(async (req, res) => {
      for await (const _ of requestBody({ env: { incoming: req } } as unknown as Context<ServerEnv>, limits)!) break
      res.writeHead(413, { 'content-length': '0' }).end()
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    port = (server.address() as AddressInfo).port
  })
  after(() => {
    server.closeAllConnections()
    server.close()
  })

  /** Sends the head of a PUT declaring `bytes` of body; the answer is gathered as it comes. */
  const upload = (bytes: number): { socket: Socket; answer: () => string } => {
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => undefined)
    let answer = ''
    socket.on('data', (d: Buffer) => (answer += d.toString()))
    socket.write(`PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: ${bytes}\r\n\r\n`)
    return { socket, answer: () => answer }
  }

  it('is dropped up to its byte bound, then its connection is cut', async () => {
    limits = { maxBytes: 1024 * 1024, maxMs: 600_000 }
    const total = 256 * 1024 * 1024
    const { socket, answer } = upload(total)
    // Plain listeners: events.once would reject at the reset that the cut is.
    const closed = new Promise<true>((resolve) => socket.once('close', () => resolve(true)))
    let written = 0
    const chunk = Buffer.alloc(64 * 1024)
    while (written < total && !socket.destroyed) {
      written += chunk.length
      if (!socket.write(chunk)) await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), closed])
    }
    // Drained whole, the connection would stay open for the next request: the race is lost.
    assert.equal(await Promise.race([closed, new Promise((r) => setImmediate(r, false))]), true, `still open after ${written} bytes`)
    assert.ok(written < total, `cut after ${written} of ${total} bytes`)
    assert.match(answer(), /^HTTP\/1\.1 413 /)
  })

  it('is dropped up to its time bound, then its connection is cut', async () => {
    limits = { maxBytes: 1024 ** 3, maxMs: 100 }
    const { socket, answer } = upload(1024 * 1024)
    // A byte every 20 ms: never idle (Node's keep-alive timeout would end an idle one), never near
    // the byte bound; only the time bound can end it.
    const trickle = setInterval(() => socket.write('x'), 20)
    await new Promise((resolve) => socket.once('close', resolve))
    clearInterval(trickle)
    assert.match(answer(), /^HTTP\/1\.1 413 /)
  })
})
