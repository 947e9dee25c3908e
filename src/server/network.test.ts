import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import { startTestServer, viaHost } from './test-server.fixture.js'

/** A server standing for one in a sandbox, that answers every connection with `answer` and closes. */
async function answering(answer: string): Promise<ReturnType<typeof createServer>> {
  const backend = createServer((s) => s.resume().end(answer))
  backend.listen(0, '127.0.0.1')
  await once(backend, 'listening')
  return backend
}

describe('network policy over the API', () => {
  it('answers each bad policy with a 400 naming the field, and leaves the current policy as it is', async () => {
    const t = await startTestServer()
    try {
      const created = await t.request('POST', '/v1/sandboxes', { body: { network: { denyOut: ['10.0.0.0/8'] } } })
      assert.equal(created.status, 201)
      const id = created.json.id as string
      const bad: [unknown, RegExp][] = [
        [{ allowOut: ['10.0.0.0/99'] }, /^allowOut\[0\]: expected an IPv4 address or CIDR.*got "10\.0\.0\.0\/99"/],
        [{ denyOut: ['example.com'] }, /^denyOut\[0\]: .*domains go in allowOut/],
        [{ allowOut: ['example.com'] }, /^allowOut: domain entries \(example\.com\) need denyOut to contain 0\.0\.0\.0\/0/],
        [{ denyOut: Array.from({ length: 300 }, () => '10.0.0.0/8') }, /^denyOut: expected at most 256 entries, got 300/],
        [{ allowOut: 'example.com' }, /^allowOut: expected an array/],
        [{ allowPublicTraffic: false }, /unknown field "allowPublicTraffic"/],
      ]
      for (const [body, message] of bad) {
        const r = await t.request('PATCH', `/v1/sandboxes/${id}/network`, { body })
        assert.equal(r.status, 400, JSON.stringify(body))
        assert.match(r.json.message, message)
      }
      const info = await t.request('GET', `/v1/sandboxes/${id}`)
      assert.deepEqual(info.json.network, { allowOut: [], denyOut: ['10.0.0.0/8'], allowPublicTraffic: true })
      assert.equal(t.agent.calls.get('updateNetwork') ?? 0, 0, 'no bad policy reached the agent')

      const good = await t.request('PATCH', `/v1/sandboxes/${id}/network`, { body: { allowOut: ['Pypi.org', '*.pythonhosted.org'], denyOut: ['0.0.0.0/0'] } })
      assert.equal(good.status, 200)
      assert.deepEqual(good.json.network.allowOut, ['pypi.org', '*.pythonhosted.org'])
      assert.deepEqual(t.agent.sandboxes.get(id)!.request!.network, { mode: 'veth', egress: { allowOut: ['pypi.org', '*.pythonhosted.org'], denyOut: ['0.0.0.0/0'] } })
    } finally {
      await t.close()
    }
  })

  it('refuses bad networks on create with nothing made, and a policy update of a sandbox without a network', async () => {
    const t = await startTestServer()
    try {
      for (const [network, message] of [
        [{ maskRequestHost: 'http://x/' }, /^network\.maskRequestHost: expected host\[:port\]/],
        [{ allowOut: ['::1'] }, /^network\.allowOut\[0\]: .*no IPv6 route/],
        ['all', /^network: /],
      ] as const) {
        const r = await t.request('POST', '/v1/sandboxes', { body: { network } })
        assert.equal(r.status, 400, JSON.stringify(network))
        assert.match(r.json.message, message)
      }
      assert.equal(t.agent.sandboxes.size, 0)
      const none = await t.request('POST', '/v1/sandboxes', { body: { network: 'none' } })
      assert.equal(none.json.network, 'none')
      const r = await t.request('PATCH', `/v1/sandboxes/${none.json.id}/network`, { body: { denyOut: ['0.0.0.0/0'] } })
      assert.equal(r.status, 409)
      assert.match(r.json.message, /network "none"/)
    } finally {
      await t.close()
    }
  })

  it('routes a sandbox host to its port, and answers 404, 400 and 403 for the wrong ones', async () => {
    const t = await startTestServer()
    const backend = await answering('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi')
    try {
      const open = (await t.request('POST', '/v1/sandboxes', { body: {} })).json
      const closed = (await t.request('POST', '/v1/sandboxes', { body: { network: { allowPublicTraffic: false } } })).json
      for (const id of [open.id, closed.id]) t.agent.sandboxes.get(id)!.ports.set(3000, (backend.address() as AddressInfo).port)
      assert.equal(open.domain, t.server.domain)
      assert.equal(open.trafficAccessToken, undefined)
      assert.match(closed.trafficAccessToken, /^[0-9a-f]{64}$/)
      const domain = t.server.domain
      assert.deepEqual(await viaHost(t.server.url, `3000-${open.id}.${domain}`), { status: 200, body: 'hi' })
      assert.equal((await viaHost(t.server.url, `3000-sb-aaaaaaaaaaaaaaaa.${domain}`)).status, 404)
      assert.equal((await viaHost(t.server.url, `nonsense.${domain}`)).status, 400)
      assert.equal((await viaHost(t.server.url, `3000-${closed.id}.${domain}`)).status, 403)
      assert.equal((await viaHost(t.server.url, `3000-${closed.id}.${domain}`, { 'e2b-traffic-access-token': open.id })).status, 403)
      assert.equal((await viaHost(t.server.url, `3000-${closed.id}.${domain}`, { 'e2b-traffic-access-token': closed.trafficAccessToken })).status, 200)
      // The traffic token is no envd access token, and the other way round.
      const envd = await t.request('POST', '/process.Process/List', { key: null, body: {}, headers: { 'e2b-sandbox-id': closed.id, 'x-access-token': closed.trafficAccessToken } })
      assert.equal(envd.status, 401)
    } finally {
      backend.close()
      await t.close()
    }
  })

  it("answers 502 for a sandbox's answer that cannot be sent on, and goes on", async () => {
    const t = await startTestServer()
    // A server in the sandbox whose status line Node reads but will not write (000).
    const backend = await answering('HTTP/1.1 000 Nothing\r\ncontent-length: 0\r\nconnection: close\r\n\r\n')
    try {
      const open = (await t.request('POST', '/v1/sandboxes', { body: {} })).json
      t.agent.sandboxes.get(open.id)!.ports.set(3000, (backend.address() as AddressInfo).port)
      const host = `3000-${open.id}.${t.server.domain}`
      const bad = await viaHost(t.server.url, host)
      assert.equal(bad.status, 502)
      assert.match(bad.body, /answered with a status line or headers that cannot be sent on \(status 0\)/)
      assert.equal((await t.request('GET', '/healthz')).status, 200)
    } finally {
      backend.close()
      await t.close()
    }
  })
})
