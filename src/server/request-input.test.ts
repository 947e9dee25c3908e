import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import { getRequestListener } from '@hono/node-server'
import { Hono } from 'hono'
import { z } from 'zod'
import { silentLogger } from '../shared/index.js'
import { maxJsonBytes } from './body-limits.js'
import type { ServerEnv } from './context.js'
import { errorResponse } from './http-errors.js'
import { bodyOf } from './request-input.js'

describe('bodyOf', () => {
  it('reads at most the JSON limit of a body, with no body limit before it, and answers 413', async () => {
    const app = new Hono<ServerEnv>()
    app.post('/', async (c) => c.json(await bodyOf(c, z.object({}).passthrough())))
    app.onError((err) => errorResponse(err, silentLogger()))
    const chunk = new Uint8Array(64 * 1024).fill(0x20)
    let pulledBytes = 0
    // 12 MiB, in chunks as a client sends them: a reader without its own bound takes them all.
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulledBytes >= 12 * 1024 * 1024) return controller.close()
        pulledBytes += chunk.byteLength
        controller.enqueue(chunk)
      },
    })
    const res = await app.request('/', { method: 'POST', body, headers: { 'content-type': 'application/json' }, duplex: 'half' } as RequestInit)
    assert.equal(res.status, 413)
    assert.match(((await res.json()) as { message: string }).message, /expected at most 8388608 bytes of JSON/)
    assert.ok(pulledBytes <= maxJsonBytes + 4 * chunk.byteLength, `${pulledBytes} bytes read`)
  })

  it('under the Node server, reads a chunked body up to the JSON limit (413 past it), also after a middleware looked at the web Request', async () => {
    const app = new Hono<ServerEnv>()
    app.post('/', async (c) => c.json(await bodyOf(c, z.object({}).passthrough())))
    // A middleware that reads the web Request's signal has the adapter make a web Request and its
    // body stream: that stream, never read, takes nothing from the Node request.
    app.post('/after-signal', async (c) => {
      void c.req.raw.signal
      return c.json(await bodyOf(c, z.object({}).passthrough()))
    })
    app.onError((err) => errorResponse(err, silentLogger()))
    const server = createServer(getRequestListener(app.fetch))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const port = (server.address() as AddressInfo).port
    try {
      const send = (chunks: Iterable<Uint8Array>, path = '/'): Promise<{ status: number; body: string }> =>
        new Promise((resolve, reject) => {
          // Chunked, as a client that declares no length sends it; a connection per request: what
          // becomes of the connection after a refusal is early-answer.test's.
          const req = request({ host: '127.0.0.1', port, method: 'POST', path, headers: { 'content-type': 'application/json' }, agent: false })
          let answered = false
          req.on('response', (res) => {
            answered = true
            const parts: Buffer[] = []
            res.on('data', (d: Buffer) => parts.push(d))
            res.on('end', () => {
              resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() })
              req.destroy()
            })
          })
          // Once answered, the rest of the body is not wanted: the writes' failure is expected.
          req.on('error', (err) => (answered ? undefined : reject(err)))
          ;(async () => {
            for (const chunk of chunks) if (!req.write(chunk)) await once(req, 'drain')
            req.end()
          })().catch(() => undefined)
        })
      const chunk = new Uint8Array(64 * 1024).fill(0x20)
      const tooMuch = await send(Array.from({ length: (12 * 1024 * 1024) / chunk.byteLength }, () => chunk))
      assert.equal(tooMuch.status, 413)
      assert.match(tooMuch.body, /expected at most 8388608 bytes of JSON/)
      const halves = [new TextEncoder().encode('{"a":'), new TextEncoder().encode('1}')]
      assert.deepEqual(JSON.parse((await send(halves)).body), { a: 1 })
      assert.deepEqual(JSON.parse((await send(halves, '/after-signal')).body), { a: 1 })
      const tooMuchAfter = await send(Array.from({ length: (12 * 1024 * 1024) / chunk.byteLength }, () => chunk), '/after-signal')
      assert.equal(tooMuchAfter.status, 413)
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })

  it('parses a body under the limit, and an empty one as {}', async () => {
    const app = new Hono<ServerEnv>()
    app.post('/', async (c) => c.json(await bodyOf(c, z.object({ a: z.number().optional() }))))
    assert.deepEqual(await (await app.request('/', { method: 'POST', body: '\ufeff{"a": 1}' })).json(), { a: 1 })
    assert.deepEqual(await (await app.request('/', { method: 'POST' })).json(), {})
  })
})
