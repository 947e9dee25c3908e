import assert from 'node:assert/strict'
import { test } from 'node:test'
import Database from 'better-sqlite3'
import { SandstormError } from '../shared/index.js'
import { startTestServer } from './test-server.fixture.js'

test('create takes its defaults from the template and answers 201 with the sandbox', async () => {
  const t = await startTestServer({ defaultTimeoutMs: 60_000 })
  try {
    const before = Date.now()
    const res = await t.request('POST', '/v1/sandboxes', { body: { template: 'host', labels: { team: 'a' }, env: { FOO: 'bar' } } })
    assert.equal(res.status, 201)
    const sb = res.json
    assert.match(sb.id, /^sb-[a-z0-9]{16}$/)
    assert.deepEqual(
      { template: sb.template, state: sb.state, runtime: sb.runtime, memoryMiB: sb.memoryMiB, cpus: sb.cpus, pidsMax: sb.pidsMax, diskMiB: sb.diskMiB, labels: sb.labels },
      { template: 'host', state: 'running', runtime: 'runc', memoryMiB: 256, cpus: 0.5, pidsMax: 1024, diskMiB: 2048, labels: { team: 'a' } },
    )
    assert.equal(sb.env, undefined, 'env may hold secrets and is not returned')
    const lifeMs = Date.parse(sb.expiresAt) - before
    assert.ok(lifeMs >= 60_000 && lifeMs < 120_000, `expiresAt is about defaultTimeoutMs away, got ${lifeMs} ms`)
    const asked = t.agent.sandboxes.get(sb.id)!.request!
    assert.deepEqual(asked, { id: sb.id, template: 'host', memoryMiB: 256, cpus: 0.5, pidsMax: 1024, diskMiB: 2048, env: { FOO: 'bar' }, network: { mode: 'veth', egress: { allowOut: [], denyOut: [] } } })
    assert.deepEqual(sb.network, { allowOut: [], denyOut: [], allowPublicTraffic: true }, 'the default network: the public internet, ports open')

    const given = await t.request('POST', '/v1/sandboxes', { body: { memoryMiB: 1024, cpus: 2, pidsMax: 64, diskMiB: 512 } })
    assert.deepEqual([given.json.template, given.json.memoryMiB, given.json.cpus, given.json.pidsMax, given.json.diskMiB], ['debian', 1024, 2, 64, 512])
    assert.equal(t.agent.sandboxes.get(given.json.id)!.request!.diskMiB, 512)
    await t.logs.waitFor((r) => r.msg === 'sandbox created' && r.sandboxId === given.json.id)
  } finally {
    await t.close()
  }
})

test('list filters by every label given and by state; get answers one sandbox', async () => {
  const t = await startTestServer()
  try {
    const a = (await t.request('POST', '/v1/sandboxes', { body: { labels: { team: 'a', env: 'prod' } } })).json
    const b = (await t.request('POST', '/v1/sandboxes', { body: { labels: { team: 'a', env: 'dev' } } })).json
    await t.request('POST', '/v1/sandboxes', { body: { labels: { team: 'b' } } })

    const all = await t.request('GET', '/v1/sandboxes')
    assert.equal(all.json.length, 3)
    const teamA = await t.request('GET', '/v1/sandboxes?label=team=a')
    assert.deepEqual(teamA.json.map((s: { id: string }) => s.id).sort(), [a.id, b.id].sort())
    const prodA = await t.request('GET', '/v1/sandboxes?label=team=a&label=env=prod')
    assert.deepEqual(prodA.json.map((s: { id: string }) => s.id), [a.id])
    assert.equal((await t.request('GET', '/v1/sandboxes?state=running')).json.length, 3)
    assert.equal((await t.request('GET', '/v1/sandboxes?state=paused')).json.length, 0)

    const badState = await t.request('GET', '/v1/sandboxes?state=gone')
    assert.equal(badState.status, 400)
    assert.match(badState.json.message, /^state: expected one of "starting", "running", .*got "gone"$/)
    const badLabel = await t.request('GET', '/v1/sandboxes?label=team')
    assert.equal(badLabel.status, 400)
    assert.match(badLabel.json.message, /label\.0: expected a label filter "key=value", got "team"/)

    const one = await t.request('GET', `/v1/sandboxes/${a.id}`)
    assert.deepEqual(one.json, a)
    const missing = await t.request('GET', '/v1/sandboxes/sb-aaaaaaaaaaaaaaaa')
    assert.deepEqual([missing.status, missing.json], [404, { code: 'not_found', message: 'sandbox "sb-aaaaaaaaaaaaaaaa" not found' }])
  } finally {
    await t.close()
  }
})

test('POST /timeout sets expiresAt to now + timeoutMs', async () => {
  const t = await startTestServer()
  try {
    const sb = (await t.request('POST', '/v1/sandboxes', { body: { timeoutMs: 60_000 } })).json
    const before = Date.now()
    const res = await t.request('POST', `/v1/sandboxes/${sb.id}/timeout`, { body: { timeoutMs: 3_600_000 } })
    assert.equal(res.status, 200)
    const lifeMs = Date.parse(res.json.expiresAt) - before
    assert.ok(lifeMs >= 3_600_000 && lifeMs < 3_660_000, `expiresAt moved to about an hour away, got ${lifeMs} ms`)
    assert.equal((await t.request('GET', `/v1/sandboxes/${sb.id}`)).json.expiresAt, res.json.expiresAt)
    assert.equal((await t.request('POST', '/v1/sandboxes/sb-aaaaaaaaaaaaaaaa/timeout', { body: { timeoutMs: 1000 } })).status, 404)
  } finally {
    await t.close()
  }
})

test('delete destroys through the agent, removes the row and answers 204; a second delete answers 404', async () => {
  const t = await startTestServer()
  try {
    const sb = (await t.request('POST', '/v1/sandboxes', { body: {} })).json
    const res = await t.request('DELETE', `/v1/sandboxes/${sb.id}`)
    assert.equal(res.status, 204)
    assert.equal(t.agent.sandboxes.has(sb.id), false)
    assert.equal((await t.request('GET', `/v1/sandboxes/${sb.id}`)).status, 404)
    assert.equal((await t.request('DELETE', `/v1/sandboxes/${sb.id}`)).status, 404)
    await t.logs.waitFor((r) => r.msg === 'sandbox destroyed' && r.sandboxId === sb.id && r.reason === 'deleted')
  } finally {
    await t.close()
  }
})

test('an unknown template answers 404 naming the templates, before anything is touched', async () => {
  const t = await startTestServer()
  try {
    const res = await t.request('POST', '/v1/sandboxes', { body: { template: 'alpine' } })
    assert.deepEqual([res.status, res.json], [404, { code: 'not_found', message: 'unknown template "alpine": expected one of debian, host' }])
    assert.equal(t.agent.calls.get('create'), undefined)
    assert.equal((await t.request('GET', '/v1/sandboxes')).json.length, 0)
  } finally {
    await t.close()
  }
})

test('a create that fails in the agent leaves no row and answers the agent error', async () => {
  const t = await startTestServer()
  try {
    t.agent.failNextCreate = new SandstormError('resource_exhausted', 'no memory left: expected 512 MiB free, got 100 MiB')
    const res = await t.request('POST', '/v1/sandboxes', { body: {} })
    assert.deepEqual([res.status, res.json.code], [429, 'resource_exhausted'])
    assert.match(res.json.message, /no memory left/)
    assert.equal((await t.request('GET', '/v1/sandboxes')).json.length, 0)
    const db = new Database(`${t.dataDir}/sandstorm.db`, { readonly: true })
    assert.deepEqual(db.prepare('SELECT count(*) AS n FROM sandboxes').get(), { n: 0 })
    db.close()
  } finally {
    await t.close()
  }
})

test('an internal error answers 500 without its cause, and logs the cause', async () => {
  const t = await startTestServer()
  try {
    t.agent.templates = async () => {
      throw new Error('secret detail: /var/lib/something')
    }
    const res = await t.request('POST', '/v1/sandboxes', { body: {} })
    assert.equal(res.status, 500)
    assert.equal(res.json.code, 'internal')
    assert.doesNotMatch(res.json.message, /secret detail/)
    const logged = await t.logs.waitFor((r) => r.level === 50)
    assert.match(JSON.stringify(logged), /secret detail/)
  } finally {
    await t.close()
  }
})

test('a sandbox past its expiresAt is destroyed through the agent and its row deleted', async () => {
  const t = await startTestServer()
  try {
    const sb = (await t.request('POST', '/v1/sandboxes', { body: { timeoutMs: 1 } })).json
    await t.logs.waitFor((r) => r.msg === 'sandbox destroyed' && r.sandboxId === sb.id && r.reason === 'expired')
    assert.equal(t.agent.sandboxes.has(sb.id), false)
    assert.equal((await t.request('GET', `/v1/sandboxes/${sb.id}`)).status, 404)
  } finally {
    await t.close()
  }
})

test('a timeout set shorter makes the sandbox expire at the new time', async () => {
  const t = await startTestServer()
  try {
    const sb = (await t.request('POST', '/v1/sandboxes', { body: { timeoutMs: 3_600_000 } })).json
    const gone = t.agent.destroyed(sb.id)
    assert.equal((await t.request('POST', `/v1/sandboxes/${sb.id}/timeout`, { body: { timeoutMs: 1 } })).status, 200)
    await gone
    await t.logs.waitFor((r) => r.msg === 'sandbox destroyed' && r.sandboxId === sb.id)
  } finally {
    await t.close()
  }
})
