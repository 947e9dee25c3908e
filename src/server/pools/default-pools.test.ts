/**
 * Default pools (`sandstorm up`'s `--pool`) on the real server over the fake agent: kept without
 * being stored, shown as defaults, skipped when the template is not built, and a stored pool wins.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { PoolInfo } from '../../shared/index.js'
import { startTestServer, type TestServer } from '../test-server.fixture.js'

const pools = async (t: TestServer): Promise<PoolInfo[]> => (await t.request('GET', '/v1/pools')).json as PoolInfo[]
const waitReady = async (t: TestServer, template: string, ready: number): Promise<PoolInfo> => {
  const res = await t.request('POST', `/v1/pools/${template}/wait`, { body: { ready } })
  assert.equal(res.status, 200, res.body.toString())
  return res.json as PoolInfo
}

describe('default pools', () => {
  it('are kept from the start, marked as defaults, and hand over a plain create', async () => {
    const t = await startTestServer({ defaultPools: [{ template: 'debian', min: 2, max: 2 }] })
    try {
      // Asked for at once: the wait holds until the pool opened and filled, rather than answering 404.
      const filled = await waitReady(t, 'debian', 2)
      assert.equal(filled.default, true)
      assert.deepEqual(await pools(t), [{ template: 'debian', min: 2, max: 2, ready: 2, starting: 0, inUse: 0, hits: 0, misses: 0, default: true }])
      const created = await t.request('POST', '/v1/sandboxes', { body: { template: 'debian' } })
      assert.equal(created.status, 201)
      assert.equal(created.json.source, 'pool')
      assert.equal((await pools(t))[0]?.hits, 1)
    } finally {
      await t.close()
    }
  })

  it('skip a template that is not built, with one log line, and keep the others', async () => {
    const t = await startTestServer({ defaultPools: [{ template: 'nosuch', min: 2, max: 2 }, { template: 'host', min: 1, max: 1 }] })
    try {
      await waitReady(t, 'host', 1)
      assert.deepEqual((await pools(t)).map((p) => p.template), ['host'])
      const skipped = t.logs.records.filter((r) => r.msg === 'default pool skipped: the template is not built on this host')
      assert.equal(skipped.length, 1)
      assert.equal(skipped[0]?.template, 'nosuch')
      assert.equal(t.logs.records.filter((r) => r.level === 50).length, 0, 'no error is logged')
      assert.equal((await t.request('POST', '/v1/pools/nosuch/wait', { body: {} })).status, 404)
    } finally {
      await t.close()
    }
  })

  it('are not stored: a start without them has none', async () => {
    const first = await startTestServer({ defaultPools: [{ template: 'debian', min: 1, max: 1 }] })
    await waitReady(first, 'debian', 1)
    await first.server.close()
    assert.deepEqual([...first.agent.sandboxes.keys()], [], 'a pooled sandbox outlived the close')
    const second = await startTestServer({ dataDir: first.dataDir, agent: first.agent })
    try {
      assert.deepEqual(await pools(second), [])
    } finally {
      await second.close()
    }
  })

  it('give way to a stored pool of the same template, at start and when one is set', async () => {
    const t = await startTestServer({ defaultPools: [{ template: 'debian', min: 1, max: 1 }, { template: 'host', min: 1, max: 1 }] })
    try {
      await waitReady(t, 'debian', 1)
      const set = await t.request('PUT', '/v1/pools/debian', { body: { min: 2, max: 3 } })
      assert.equal(set.status, 200)
      assert.equal(set.json.default, undefined, 'a pool set through the API is stored, not a default')
      await t.restart()
      await waitReady(t, 'host', 1)
      const after = await pools(t)
      assert.deepEqual(after.map((p) => [p.template, p.min, p.max, p.default]), [
        ['debian', 2, 3, undefined],
        ['host', 1, 1, true],
      ])
    } finally {
      await t.close()
    }
  })

  it('are removed until the next start', async () => {
    const t = await startTestServer({ defaultPools: [{ template: 'debian', min: 1, max: 1 }] })
    try {
      const ready = await waitReady(t, 'debian', 1)
      assert.equal(ready.ready, 1)
      assert.equal((await t.request('DELETE', '/v1/pools/debian')).status, 204)
      assert.deepEqual(await pools(t), [])
      const created = await t.request('POST', '/v1/sandboxes', { body: { template: 'debian' } })
      assert.equal(created.json.source, undefined, 'without a pool a create is cold')
      await t.restart()
      assert.equal((await waitReady(t, 'debian', 1)).default, true)
    } finally {
      await t.close()
    }
  })
})
