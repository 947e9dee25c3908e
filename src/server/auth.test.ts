import assert from 'node:assert/strict'
import { readFileSync, statSync } from 'node:fs'
import { test } from 'node:test'
import Database from 'better-sqlite3'
import { startTestServer } from './test-server.fixture.js'

test('every route but /healthz answers 401 without a key or with a wrong one, and logs it', async () => {
  const t = await startTestServer()
  try {
    const none = await t.request('GET', '/v1/sandboxes', { key: null })
    assert.equal(none.status, 401)
    assert.equal(none.json.code, 'unauthenticated')
    assert.match(none.json.message, /missing API key: expected "Authorization: Bearer <key>"/)

    const wrong = await t.request('GET', '/v1/sandboxes', { key: `ss_${'0'.repeat(64)}` })
    assert.equal(wrong.status, 401)
    assert.match(wrong.json.message, /wrong API key/)
    await t.logs.waitFor((r) => r.msg === 'unauthenticated request: wrong API key')

    assert.equal((await t.request('GET', '/metrics', { key: null })).status, 401)
    assert.equal((await t.request('POST', '/v1/sandboxes', { key: null, body: {} })).status, 401)
    assert.equal(t.agent.calls.get('create'), undefined, 'nothing reached the agent')

    const health = await t.request('GET', '/healthz', { key: null })
    assert.deepEqual([health.status, health.json], [200, { ok: true }])
  } finally {
    await t.close()
  }
})

test('the key works as a Bearer token and as X-API-Key', async () => {
  const t = await startTestServer()
  try {
    assert.equal((await t.request('GET', '/v1/sandboxes')).status, 200)
    const viaHeader = await t.request('GET', '/v1/sandboxes', { key: null, headers: { 'x-api-key': t.server.apiKey } })
    assert.equal(viaHeader.status, 200)
  } finally {
    await t.close()
  }
})

test('the key file is mode 0600, holds the key, and only its sha256 is stored', async () => {
  const t = await startTestServer()
  try {
    assert.match(t.server.apiKey, /^ss_[0-9a-f]{64}$/)
    assert.equal(statSync(t.server.apiKeyPath).mode & 0o777, 0o600)
    assert.equal(readFileSync(t.server.apiKeyPath, 'utf8').trim(), t.server.apiKey)
    const db = new Database(`${t.dataDir}/sandstorm.db`, { readonly: true })
    const rows = db.prepare('SELECT sha256 FROM api_keys').all() as { sha256: string }[]
    db.close()
    assert.equal(rows.length, 1)
    assert.notEqual(rows[0]!.sha256, t.server.apiKey)
    assert.doesNotMatch(readFileSync(`${t.dataDir}/sandstorm.db`).toString('latin1'), new RegExp(t.server.apiKey))
  } finally {
    await t.close()
  }
})

test('a restarted server reuses its key', async () => {
  const t = await startTestServer()
  try {
    const first = t.server.apiKey
    await t.restart()
    assert.equal(t.server.apiKey, first)
    assert.equal((await t.request('GET', '/v1/sandboxes')).status, 200)
    const db = new Database(`${t.dataDir}/sandstorm.db`, { readonly: true })
    assert.deepEqual(db.prepare('SELECT count(*) AS n FROM api_keys').get(), { n: 1 })
    db.close()
  } finally {
    await t.close()
  }
})

test('an unknown route answers 404 in the JSON error form', async () => {
  const t = await startTestServer()
  try {
    const res = await t.request('GET', '/v1/nothing-here')
    assert.equal(res.status, 404)
    assert.equal(res.json.code, 'not_found')
    assert.match(res.json.message, /no route GET \/v1\/nothing-here/)
  } finally {
    await t.close()
  }
})
