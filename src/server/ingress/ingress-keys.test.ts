import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import { startTestServer, type TestServer } from '../test-server.fixture.js'

/** A GET through the server with these raw header lines (repeats kept), on a connection of its own. */
function get(t: TestServer, raw: string[]): Promise<{ status: number; body: string }> {
  const { port } = new URL(t.server.url)
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/', headers: [...raw, 'Connection', 'close'] as never, setHost: false, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => (body += c))
      res.on('end', () => res.socket.once('close', () => resolve({ status: res.statusCode ?? 0, body })).end())
    })
      .on('error', reject)
      .end()
  })
}

/** A made-up key of Sandstorm's shape: hashed and looked up like a real one, and found in no store. */
const fakeKey = (): string => `ss_${randomBytes(32).toString('hex')}`

describe('API keys in requests through ingress', () => {
  it('are refused past 4 lines that carry one (400 naming the header), before any reaches the sandbox; a missing sandbox is a 404 first', async () => {
    const t = await startTestServer()
    let requests = 0
    const backend = createServer((req, res) => {
      requests++
      res.end(JSON.stringify(req.rawHeaders))
    })
    backend.listen(0, '127.0.0.1')
    await once(backend, 'listening')
    try {
      const sb = (await t.request('POST', '/v1/sandboxes', { body: {} })).json
      t.agent.sandboxes.get(sb.id)!.ports.set(8000, (backend.address() as AddressInfo).port)
      const host = `8000-${sb.id}.${t.server.domain}`
      const bearer = (n: number): string[] => Array.from({ length: n }, () => ['Authorization', `Bearer ${fakeKey()}`]).flat()

      const five = await get(t, ['Host', host, ...bearer(5)])
      assert.equal(five.status, 400)
      assert.match(JSON.parse(five.body).message, /^Authorization: expected at most 4 header lines that carry an API key, got 5$/)
      const mixed = await get(t, ['Host', host, ...bearer(3), 'X-API-Key', fakeKey(), 'x-api-key', `e2b_${randomBytes(20).toString('hex')}`])
      assert.equal(mixed.status, 400)
      assert.match(JSON.parse(mixed.body).message, /^Authorization and X-API-Key: .*got 5$/)
      assert.equal(requests, 0, 'a refused request reached the sandbox')

      // Four pass, the server's own key among them, which the app never sees.
      const four = await get(t, ['Host', host, ...bearer(3), 'Authorization', `Bearer ${t.server.apiKey}`])
      assert.equal(four.status, 200)
      assert.equal((JSON.parse(four.body) as string[]).filter((v) => v === `Bearer ${t.server.apiKey}`).length, 0)
      // An app's own tokens are not keys' shape: any number of them pass.
      const own = await get(t, ['Host', host, ...Array.from({ length: 10 }, (_, i) => ['Authorization', `Bearer app-token-${i}`]).flat()])
      assert.equal(own.status, 200)

      const missing = await get(t, ['Host', `8000-sb-aaaaaaaaaaaaaaaa.${t.server.domain}`, ...bearer(150)])
      assert.equal(missing.status, 404)
      assert.match(JSON.parse(missing.body).message, /sandbox "sb-aaaaaaaaaaaaaaaa" not found/)
    } finally {
      backend.close()
      await t.close()
    }
  })
})
