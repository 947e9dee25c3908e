import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startTestServer } from './test-server.fixture.js'

test('a request without a key is logged with at most 200 characters of its path', async () => {
  const t = await startTestServer()
  try {
    const res = await t.request('GET', `/v1/sandboxes/${'x'.repeat(8000)}`, { key: null })
    assert.equal(res.status, 401)
    const line = await t.logs.waitFor((r) => typeof r.msg === 'string' && r.msg.startsWith('unauthenticated request'))
    assert.equal(String(line.path).length, 200)
  } finally {
    await t.close()
  }
})
