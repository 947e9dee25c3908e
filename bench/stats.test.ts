import assert from 'node:assert/strict'
import { test } from 'node:test'
import { mapLimit } from './concurrency.js'
import { formatResult, goalMet, ratios, type Figure } from './report.js'
import { summarize } from './stats.js'

test('summarize takes nearest-rank percentiles of measured values', () => {
  const s = summarize(Array.from({ length: 100 }, (_, i) => 100 - i))
  assert.deepEqual([s.n, s.min, s.p50, s.p95, s.p99, s.max, s.mean], [100, 1, 50, 95, 99, 100, 50.5])
  assert.deepEqual(summarize([7]), { n: 1, min: 7, max: 7, mean: 7, p50: 7, p95: 7, p99: 7 })
  assert.throws(() => summarize([]), /at least one sample/)
})

test('ratios and goals compare the figure with its baseline and target', () => {
  const figure: Figure = {
    what: 'x',
    unit: 'ms',
    subject: summarize([10, 20, 30, 40]),
    baseline: { what: 'base', summary: summarize([5, 10, 15, 20]) },
    goal: { stat: 'p50', atMost: 15 },
  }
  assert.deepEqual(ratios(figure), { p50: 2, p95: 2, p99: 2, mean: 2 })
  assert.equal(goalMet(figure), false)
  assert.equal(ratios({ ...figure, baseline: null }), null)
  const text = formatResult({ name: 'b', title: 't', figures: [figure], notes: ['n'] })
  assert.match(text, /baseline: base/)
  assert.match(text, /2\.00x/)
  assert.match(text, /MISSED/)
})

test('mapLimit keeps order, never exceeds its limit, and stops after a failure', async () => {
  let inFlight = 0
  let most = 0
  const out = await mapLimit([1, 2, 3, 4, 5, 6], 2, async (x) => {
    most = Math.max(most, ++inFlight)
    await new Promise((r) => setImmediate(r))
    inFlight--
    return x * 10
  })
  assert.deepEqual(out, [10, 20, 30, 40, 50, 60])
  assert.equal(most, 2)
  const started: number[] = []
  await assert.rejects(
    mapLimit([1, 2, 3, 4], 1, async (x) => {
      started.push(x)
      if (x === 2) throw new Error('boom')
    }),
    /boom/,
  )
  assert.deepEqual(started, [1, 2])
})
