import assert from 'node:assert/strict'
import { once } from 'node:events'
import { test } from 'node:test'
import { SandstormError } from '../shared/index.js'
import { startTestServer } from './test-server.fixture.js'

test('a delete with wait=false whose destroy fails until the server closes is done by the next start', async () => {
  const t = await startTestServer()
  try {
    const sb = (await t.request('POST', '/v1/sandboxes', { body: {} })).json
    const destroy = t.agent.destroy.bind(t.agent)
    const first = t.server
    const closeFirst = first.close
    let away = true
    first.close = async () => {
      await closeFirst()
      away = false
    }
    t.agent.destroy = async (id, options) => {
      if (!away) return destroy(id, options)
      t.agent.events.emit('destroy-failed')
      throw new SandstormError('unavailable', 'the agent is away')
    }
    const failed = once(t.agent.events, 'destroy-failed')
    assert.equal((await t.request('DELETE', `/v1/sandboxes/${sb.id}?wait=false`)).status, 202)
    await failed
    // Still listed (the destroy did not happen), now due to expire.
    const [listed] = (await t.request('GET', '/v1/sandboxes')).json
    assert.equal(listed.id, sb.id)
    assert.ok(Date.parse(listed.expiresAt) <= Date.now())
    const gone = t.agent.destroyed(sb.id)
    await t.restart()
    await gone
    assert.deepEqual((await t.request('GET', '/v1/sandboxes')).json, [])
  } finally {
    await t.close()
  }
})
