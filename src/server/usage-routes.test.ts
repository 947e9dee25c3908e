import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { SandboxMetrics } from '../shared/index.js'
import { startTestServer, type LogRecord, type TestServer } from './test-server.fixture.js'

/** The usage series over the fake agent, sampled every 50 ms: Sandstorm's routes and E2B's. */
describe('usage series routes', () => {
  let t: TestServer
  let id = ''
  const intervalMs = 50

  before(async () => {
    t = await startTestServer({ metricsIntervalMs: intervalMs })
    id = (await t.request('POST', '/v1/sandboxes', { body: {} })).json.id
    // Three ticks that sampled it: the recorder logs each.
    const sampled = (r: LogRecord) => r.msg === 'usage sampled' && Number(r.samples) > 0
    await t.logs.waitFor((r) => sampled(r) && t.logs.records.filter(sampled).length >= 3)
  })
  after(async () => {
    await t?.close()
  })

  it('GET /v1/sandboxes/:id/metrics: the series, oldest first, spaced by the interval', async () => {
    const res = await t.request('GET', `/v1/sandboxes/${id}/metrics`)
    assert.equal(res.status, 200)
    const series = res.json as SandboxMetrics[]
    assert.ok(series.length >= 3, `${series.length} samples`)
    const times = series.map((m) => Date.parse(m.timestamp))
    for (let i = 1; i < times.length; i++) assert.ok(times[i]! - times[i - 1]! >= intervalMs - 1, `gap ${times[i]! - times[i - 1]!} ms`)
    assert.deepEqual(Object.keys(series[0]!).sort(), ['cpuUsedPct', 'cpus', 'diskLimitBytes', 'diskUsedBytes', 'memoryLimitBytes', 'memoryUsedBytes', 'pids', 'timestamp'])
    const from = new Date(times[1]!).toISOString()
    const to = new Date(times[2]!).toISOString()
    const ranged = (await t.request('GET', `/v1/sandboxes/${id}/metrics?start=${from}&end=${to}`)).json as SandboxMetrics[]
    assert.deepEqual(ranged.map((m) => m.timestamp), [from, to])
  })

  it('GET /v1/sandboxes/:id/usage: one sample taken now', async () => {
    const res = await t.request('GET', `/v1/sandboxes/${id}/usage`)
    assert.equal(res.status, 200)
    assert.equal(res.json.memoryUsedBytes, 1 << 20)
  })

  it('E2B: GET /sandboxes/:id/metrics in Unix seconds, its fields, 400 naming a bad param', async () => {
    const headers = { 'x-api-key': t.server.apiKey }
    const all = (await t.request('GET', `/sandboxes/${id}/metrics`, { headers })).json as Record<string, unknown>[]
    assert.ok(all.length >= 3)
    assert.deepEqual(Object.keys(all[0]!).sort(), ['cpuCount', 'cpuUsedPct', 'diskTotal', 'diskUsed', 'memCache', 'memTotal', 'memUsed', 'timestamp', 'timestampUnix'])
    assert.equal(all[0]!.timestampUnix, Math.floor(Date.parse(String(all[0]!.timestamp)) / 1000))
    const future = Math.floor(Date.now() / 1000) + 3600
    assert.deepEqual((await t.request('GET', `/sandboxes/${id}/metrics?start=${future}`, { headers })).json, [])
    for (const [query, message] of [
      ['start=yesterday', /^start: expected a Unix time in seconds, got "yesterday"/],
      ['end=1.5', /^end: expected a Unix time in seconds/],
      ['start=20&end=10', /^end: expected a Unix time at or after start \(20\), got 10/],
    ] as const) {
      const res = await t.request('GET', `/sandboxes/${id}/metrics?${query}`, { headers })
      assert.equal(res.status, 400, query)
      assert.match(res.json.message, message)
    }
    const bad = await t.request('GET', `/v1/sandboxes/${id}/metrics?start=soon`)
    assert.equal(bad.status, 400)
    assert.match(bad.json.message, /^start: expected an ISO 8601 time/)
  })

  it('a killed sandbox has no metrics: 404 on both surfaces', async () => {
    assert.equal((await t.request('DELETE', `/v1/sandboxes/${id}`)).status, 204)
    assert.equal((await t.request('GET', `/v1/sandboxes/${id}/metrics`)).status, 404)
    assert.equal((await t.request('GET', `/sandboxes/${id}/metrics`, { headers: { 'x-api-key': t.server.apiKey } })).status, 404)
  })
})
