import assert from 'node:assert/strict'
import { test } from 'node:test'
import { InvalidArgumentError } from '@sandstorm/sdk'
import { formatDuration, parseDuration } from './duration.js'

test('durations with units and plain milliseconds', () => {
  assert.equal(parseDuration('500ms'), 500)
  assert.equal(parseDuration('30s'), 30_000)
  assert.equal(parseDuration('10m'), 600_000)
  assert.equal(parseDuration('2h'), 7_200_000)
  assert.equal(parseDuration('1d'), 86_400_000)
  assert.equal(parseDuration('1.5s'), 1500)
  assert.equal(parseDuration('250'), 250)
})

test('bad durations say what was expected and what came', () => {
  for (const bad of ['', 'abc', '10x', '-5s', '0', '0s', '1 0s']) {
    assert.throws(() => parseDuration(bad, '--timeout'), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError)
      assert.match(err.message, /--timeout: expected a duration such as 500ms, 30s/)
      assert.ok(err.message.includes(`"${bad}"`))
      return true
    })
  }
})

test('durations print short', () => {
  assert.equal(formatDuration(42_000), '42s')
  assert.equal(formatDuration(9 * 60_000 + 5000), '9m')
  assert.equal(formatDuration(3 * 3_600_000), '3h')
  assert.equal(formatDuration(2 * 86_400_000), '2d')
})
