/** The SDK's fetch over node:http against a real server on port 0: what the SDK reads of it. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import http, { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { resolveConnection } from './connection.js'
import { ConnectionError } from './errors.js'
import { createApiClient } from './http-client.js'
import { defaultFetch } from './node-fetch.js'

describe('the default fetch under Node', () => {
  let server: Server
  let base = ''
  const httpFetch = defaultFetch()

  before(async () => {
    server = createServer((req, res) => {
      if (req.url === '/hang') return // never answers: the caller's signal must end it
      if (req.url === '/cut') {
        res.write('first chunk') // then the connection dies, as when a server is killed mid-answer
        setTimeout(() => res.socket?.destroy(), 20)
        return
      }
      if (req.url === '/half') {
        res.write('first chunk') // then never ends: a body read must end with the signal
        return
      }
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        res.setHeader('x-next-token', 'abc')
        res.statusCode = req.url === '/missing' ? 404 : 200
        res.end(JSON.stringify({ method: req.method, length: req.headers['content-length'] ?? null, body: Buffer.concat(chunks).toString() }))
      })
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  it('is the one over node:http, for every connection that names none', () => {
    assert.notEqual(httpFetch, globalThis.fetch)
    const fetchOf = resolveConnection({ apiKey: 'k' }).fetch
    assert.notEqual(fetchOf, globalThis.fetch)
    assert.equal(resolveConnection({ apiKey: 'other' }).fetch, fetchOf)
    const own: typeof fetch = async () => new Response('')
    assert.equal(resolveConnection({ apiKey: 'k', fetch: own }).fetch, own)
  })

  it("keeps connections of its own: not those of Node's global agent, which the rest of the process shares", async () => {
    const shared = http.globalAgent
    // A global agent that cannot connect: a request that went through it would fail.
    http.globalAgent = new http.Agent({ keepAlive: true })
    http.globalAgent.createConnection = () => {
      throw new Error("the global agent's connection was used")
    }
    try {
      const res = await httpFetch(`${base}/x`, { method: 'POST', body: '{}' })
      assert.equal(res.status, 200)
      await res.text()
    } finally {
      http.globalAgent.destroy()
      http.globalAgent = shared
    }
  })

  it('sends whole and streamed bodies and reads status, headers and JSON', async () => {
    const res = await httpFetch(`${base}/x`, { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } })
    assert.deepEqual([res.ok, res.status, res.headers.get('X-Next-Token'), res.headers.get('none')], [true, 200, 'abc', null])
    assert.deepEqual(await res.json(), { method: 'POST', length: '7', body: '{"a":1}' })
    const bytes = await httpFetch(`${base}/bytes`, { method: 'PUT', body: new Uint8Array([104, 105]) })
    assert.equal((JSON.parse(await bytes.text()) as { body: string }).body, 'hi')
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode('one '))
        c.enqueue(new TextEncoder().encode('two'))
        c.close()
      },
    })
    const streamed = await httpFetch(`${base}/up`, { method: 'PUT', body: stream, duplex: 'half' } as RequestInit)
    assert.equal((JSON.parse(await streamed.text()) as { body: string }).body, 'one two')
    const missing = await httpFetch(`${base}/missing`)
    assert.deepEqual([missing.ok, missing.status], [false, 404])
    // The body is the answer's Node stream, an AsyncIterable<Uint8Array> as the SDK takes it.
    let text = ''
    for await (const chunk of missing.body as unknown as AsyncIterable<Uint8Array>) text += new TextDecoder().decode(chunk)
    assert.match(text, /"method":"GET"/)
  })

  it('fails as undici does: fetch failed with the socket error, or the signal reason', async () => {
    const closed = createServer()
    closed.listen(0, '127.0.0.1')
    await once(closed, 'listening')
    const port = (closed.address() as AddressInfo).port
    await new Promise((resolve) => closed.close(resolve))
    await assert.rejects(httpFetch(`http://127.0.0.1:${port}/`), (err: Error) => err instanceof TypeError && err.message === 'fetch failed' && (err.cause as { code?: string }).code === 'ECONNREFUSED')
    const controller = new AbortController()
    const pending = httpFetch(`${base}/hang`, { signal: controller.signal })
    const reason = new Error('stop')
    controller.abort(reason)
    await assert.rejects(pending, (err) => err === reason)
  })

  it('fails a body whose connection dies as undici does (terminated), which the SDK reports as a dropped connection', async () => {
    const res = await httpFetch(`${base}/cut`)
    await assert.rejects(res.text(), (err: Error) => err instanceof TypeError && err.message === 'terminated' && err.cause instanceof Error)
    const client = createApiClient(resolveConnection({ apiUrl: base, apiKey: 'k' }))
    await assert.rejects(client.json({ method: 'GET', path: '/cut' }), (err: Error) => err instanceof ConnectionError && err.code === 'unavailable')
    let read = ''
    await assert.rejects(
      (async () => {
        for await (const chunk of await client.chunks({ method: 'GET', path: '/cut' })) read += new TextDecoder().decode(chunk)
      })(),
      (err: Error) => err instanceof ConnectionError,
    )
    assert.equal(read, 'first chunk')
  })

  it('ends a body being read when the signal fires', async () => {
    const controller = new AbortController()
    const res = await httpFetch(`${base}/half`, { signal: controller.signal })
    const reading = res.text()
    setTimeout(() => controller.abort(new Error('stop')), 20)
    await assert.rejects(reading)
  })
})
