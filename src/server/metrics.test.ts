import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startTestServer } from './test-server.fixture.js'

test('/metrics shows sandboxes by state, create and exec histograms, requests by route, and process metrics', async () => {
  const t = await startTestServer()
  try {
    const sb = (await t.request('POST', '/v1/sandboxes', { body: {} })).json
    await t.request('POST', '/v1/sandboxes', { body: {} })
    await t.request('POST', `/v1/sandboxes/${sb.id}/exec`, { body: { cmd: 'echo hi' } })
    await t.request('GET', `/v1/sandboxes/${sb.id}`)
    await t.request('GET', '/v1/nowhere')

    const res = await t.request('GET', '/metrics')
    assert.equal(res.status, 200)
    assert.match(res.headers['content-type'] ?? '', /^text\/plain/)
    const text = res.body.toString()
    assert.match(text, /^sandstorm_sandboxes\{state="running"\} 2$/m)
    assert.match(text, /^sandstorm_sandboxes\{state="starting"\} 0$/m)
    assert.match(text, /^sandstorm_sandbox_create_seconds_count 2$/m)
    assert.match(text, /^sandstorm_exec_seconds_count 1$/m)
    assert.match(text, /^sandstorm_http_requests_total\{route="POST \/v1\/sandboxes",status="201"\} 2$/m)
    assert.match(text, /^sandstorm_http_requests_total\{route="GET \/v1\/sandboxes\/:id",status="200"\} 1$/m)
    assert.match(text, /^sandstorm_http_requests_total\{route="unmatched",status="404"\} 1$/m)
    assert.match(text, /^process_cpu_seconds_total /m)
    assert.match(text, /^nodejs_heap_size_used_bytes /m)
  } finally {
    await t.close()
  }
})
