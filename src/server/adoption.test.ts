import assert from 'node:assert/strict'
import { test } from 'node:test'
import Database from 'better-sqlite3'
import { createFakeAgent } from './fake-agent.fixture.js'
import { startTestServer } from './test-server.fixture.js'

test('on restart: running sandboxes are kept, vanished ones forgotten, orphans destroyed, each logged', async () => {
  const agent = createFakeAgent()
  const t = await startTestServer({ agent })
  try {
    const kept = (await t.request('POST', '/v1/sandboxes', { body: { labels: { keep: 'yes' } } })).json
    const vanished = (await t.request('POST', '/v1/sandboxes', { body: {} })).json
    await t.server.close()

    // While the server was down: one sandbox died with its host, one appeared that no row knows.
    agent.sandboxes.delete(vanished.id)
    agent.plant('sb-orphan0000000000')
    agent.sandboxes.get(kept.id)!.sandbox.status = 'paused'

    await t.restart()
    const listed = (await t.request('GET', '/v1/sandboxes')).json
    assert.deepEqual(listed.map((s: { id: string; state: string; labels: object }) => [s.id, s.state, s.labels]), [[kept.id, 'paused', { keep: 'yes' }]])
    assert.equal(agent.sandboxes.has('sb-orphan0000000000'), false, 'the orphan is destroyed')
    assert.equal(agent.sandboxes.has(kept.id), true)

    await t.logs.waitFor((r) => r.sandboxId === kept.id && r.msg === 'adopted a sandbox that still runs')
    await t.logs.waitFor((r) => r.sandboxId === vanished.id && r.msg === 'sandbox is gone from the agent; removed from the catalog')
    await t.logs.waitFor((r) => r.sandboxId === 'sb-orphan0000000000' && r.msg === 'destroyed an orphan sandbox that the catalog does not know')
  } finally {
    await t.close()
  }
})

test('on restart, expiry timers are re-armed from the database', async () => {
  const agent = createFakeAgent()
  const t = await startTestServer({ agent })
  try {
    const sb = (await t.request('POST', '/v1/sandboxes', { body: { timeoutMs: 3_600_000 } })).json
    await t.server.close()
    // Its time ran out while the server was down: only the row knows it.
    const db = new Database(`${t.dataDir}/sandstorm.db`)
    db.prepare('UPDATE sandboxes SET expires_at = ? WHERE id = ?').run(Date.now() - 1000, sb.id)
    db.close()
    assert.equal(agent.sandboxes.has(sb.id), true)
    const gone = agent.destroyed(sb.id)
    await t.restart()
    await gone
    await t.logs.waitFor((r) => r.msg === 'sandbox destroyed' && r.sandboxId === sb.id && r.reason === 'expired')
    assert.equal((await t.request('GET', `/v1/sandboxes/${sb.id}`)).status, 404)
  } finally {
    await t.close()
  }
})

test('closing the server leaves sandboxes running and their rows in place', async () => {
  const agent = createFakeAgent()
  const t = await startTestServer({ agent })
  try {
    const sb = (await t.request('POST', '/v1/sandboxes', { body: {} })).json
    await t.restart()
    assert.equal(agent.sandboxes.has(sb.id), true)
    assert.equal((await t.request('GET', `/v1/sandboxes/${sb.id}`)).json.state, 'running')
    assert.equal(agent.calls.get('destroy'), undefined)
  } finally {
    await t.close()
  }
})
