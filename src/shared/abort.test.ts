import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { linkSignal } from './abort.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

describe('linkSignal', () => {
  it("fires at the deadline given with a caller's signal, though garbage collection ran meanwhile", async () => {
    const caller = new AbortController()
    const fired: string[] = []
    for (let i = 0; i < 20; i++) {
      linkSignal({ signal: caller.signal, timeoutMs: 50 })!.addEventListener('abort', function (this: AbortSignal) {
        fired.push((this.reason as Error).name)
      })
    }
    // Collections before the deadline, then past it: what is under test is a timer.
    for (let i = 0; i < 5; i++) {
      gc()
      await sleep(5)
    }
    await sleep(250)
    assert.deepEqual(fired, Array(20).fill('TimeoutError'))
    assert.equal(caller.signal.aborted, false)
  })

  it("fires on the caller's cancel first, with the caller's reason", () => {
    const caller = new AbortController()
    const signal = linkSignal({ signal: caller.signal, timeoutMs: 60_000 })!
    caller.abort(new Error('gone'))
    assert.equal(signal.aborted, true)
    assert.equal((signal.reason as Error).message, 'gone')
  })
})
