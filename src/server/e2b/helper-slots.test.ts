import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createHelperSlots } from './helper-slots.js'

/** A piece of work that runs until `finish()`. */
function held(): { work: () => Promise<string>; started: Promise<void>; finish(): void; running(): boolean } {
  let finish!: () => void
  let begin!: () => void
  let running = false
  const started = new Promise<void>((resolve) => (begin = resolve))
  const done = new Promise<void>((resolve) => (finish = resolve))
  return {
    work: async () => {
      running = true
      begin()
      await done
      running = false
      return 'done'
    },
    started,
    finish: () => finish(),
    running: () => running,
  }
}

describe('helper slots', () => {
  it('run at most so many at once per sandbox, the rest in the order they came', async () => {
    const slots = createHelperSlots({ perSandbox: 2 })
    const works = Array.from({ length: 5 }, () => held())
    const order: number[] = []
    const results = works.map((w, i) => slots.run('sb-a', () => (order.push(i), w.work())))
    // Another sandbox has its own slots.
    const other = held()
    const otherResult = slots.run('sb-b', other.work)
    await Promise.all([works[0]!.started, works[1]!.started, other.started])
    assert.deepEqual(order, [0, 1])
    works[1]!.finish()
    await works[2]!.started
    assert.deepEqual(order, [0, 1, 2])
    assert.equal(works.filter((w) => w.running()).length, 2)
    for (const w of works) w.finish()
    other.finish()
    assert.deepEqual(await Promise.all(results), ['done', 'done', 'done', 'done', 'done'])
    assert.equal(await otherResult, 'done')
    assert.deepEqual(order, [0, 1, 2, 3, 4])
  })

  it('start nothing for a caller that went away while it waited, and pass its turn on', async () => {
    const slots = createHelperSlots({ perSandbox: 1 })
    const first = held()
    const running = slots.run('sb-a', first.work)
    await first.started
    const gone = new AbortController()
    let ranGone = false
    const waiting = slots.run('sb-a', async () => void (ranGone = true), { signal: gone.signal })
    const next = held()
    const after = slots.run('sb-a', next.work)
    gone.abort(new Error('client gone'))
    await assert.rejects(waiting, /client gone/)
    first.finish()
    await next.started
    next.finish()
    assert.equal(await running, 'done')
    assert.equal(await after, 'done')
    assert.equal(ranGone, false)
    // A failed piece of work frees its slot too.
    await assert.rejects(slots.run('sb-a', async () => Promise.reject(new Error('helper failed'))), /helper failed/)
    assert.equal(await slots.run('sb-a', async () => 'free'), 'free')
  })
})
