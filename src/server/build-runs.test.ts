import assert from 'node:assert/strict'
import { once } from 'node:events'
import { describe, it } from 'node:test'
import { SandstormError } from '../shared/index.js'
import { createBuildRuns } from './build-runs.js'

/** Work that runs until its signal fires, then takes `cleanup` to end (a build removing its sandbox). */
function untilStopped(cleanup: () => Promise<void> = async () => {}) {
  return async (signal: AbortSignal): Promise<never> => {
    if (!signal.aborted) await once(signal, 'abort')
    await cleanup()
    throw signal.reason
  }
}

describe('running builds', () => {
  it('stops a build past its deadline with deadline_exceeded naming the template', async () => {
    const runs = createBuildRuns({ timeoutMs: 1 })
    await assert.rejects(runs.run('slow', new AbortController().signal, untilStopped()), (err: unknown) => {
      assert.ok(err instanceof SandstormError)
      assert.equal(err.code, 'deadline_exceeded')
      assert.match(err.message, /^build of template "slow" ran past the server's build deadline of 1 ms/)
      return true
    })
  })

  it('stops every build of a name and resolves once they have ended, leaving other names running', async () => {
    const runs = createBuildRuns({ timeoutMs: 60_000 })
    const cleaned: string[] = []
    const a1 = runs.run('a', new AbortController().signal, untilStopped(async () => void cleaned.push('a1')))
    const a2 = runs.run('a', new AbortController().signal, untilStopped(async () => void cleaned.push('a2')))
    const other = new AbortController()
    const b = runs.run('b', other.signal, untilStopped())
    const reason = new SandstormError('canceled', 'deleted')
    assert.equal(await runs.stop('a', reason), 2)
    assert.deepEqual(cleaned.sort(), ['a1', 'a2'], 'stop resolved before the builds had cleaned up')
    await assert.rejects(a1, (err) => err === reason)
    await assert.rejects(a2, (err) => err === reason)
    assert.equal(await runs.stop('a', reason), 0, 'ended builds are forgotten')
    other.abort(new SandstormError('canceled', 'client gone'))
    await assert.rejects(b, /client gone/)
  })
})
