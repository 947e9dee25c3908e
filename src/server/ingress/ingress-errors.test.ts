import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { startTestServer, viaHost } from '../test-server.fixture.js'

describe('ingress errors', () => {
  it('show a client the message of an error only where it may be shown: an internal one is logged, and answered with an id', async () => {
    const t = await startTestServer()
    try {
      const sb = (await t.request('POST', '/v1/sandboxes', { body: {} })).json
      const hostPath = `/var/lib/sandstorm/sandboxes/${sb.id}/ports/3000.sock`
      // An errno of the host, as a connect into the sandbox can fail with: it names a host path.
      t.agent.connect = async () => {
        throw Object.assign(new Error(`connect EACCES ${hostPath}`), { code: 'EACCES' })
      }
      const res = await viaHost(t.server.url, `3000-${sb.id}.${t.server.domain}`)
      assert.equal(res.status, 500)
      const body = JSON.parse(res.body) as { code: string; message: string }
      assert.equal(body.code, 'internal')
      assert.doesNotMatch(body.message, /sandstorm|EACCES/)
      const requestId = /as request (req-[a-z0-9]+)/.exec(body.message)?.[1]
      assert.ok(requestId, body.message)
      const logged = await t.logs.waitFor((r) => r.requestId === requestId)
      assert.match(String(logged.msg), /EACCES/)
      assert.equal(logged.sandboxId, sb.id)
      // An error written for the client still reaches it whole.
      const missing = await viaHost(t.server.url, `3000-sb-aaaaaaaaaaaaaaaa.${t.server.domain}`)
      assert.equal(missing.status, 404)
      assert.match(JSON.parse(missing.body).message, /sandbox "sb-aaaaaaaaaaaaaaaa" not found/)
    } finally {
      await t.close()
    }
  })
})
