import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createKeyedQueue, createSerialQueue } from './work-queue.js'

/** A promise the test settles by hand. */
function gate() {
  let open!: () => void
  const opened = new Promise<void>((resolve) => (open = resolve))
  return { open, opened }
}

describe('work queues', () => {
  it('run one work at a time, in order, and go on after a failure', async () => {
    const queue = createSerialQueue()
    const seen: string[] = []
    const first = gate()
    const a = queue.run(async () => {
      seen.push('a starts')
      await first.opened
      seen.push('a ends')
      throw new Error('a failed')
    })
    const b = queue.run(async () => (seen.push('b'), 'b done'))
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(seen, ['a starts'], 'b waits for a')
    first.open()
    await assert.rejects(a, /a failed/)
    assert.equal(await b, 'b done')
    assert.deepEqual(seen, ['a starts', 'a ends', 'b'])
  })

  it('keep one line per key, and forget a key once its work is done', async () => {
    const queue = createKeyedQueue<string>()
    const seen: string[] = []
    const held = gate()
    const x1 = queue.run('x', async () => {
      await held.opened
      seen.push('x1')
    })
    const x2 = queue.run('x', async () => {
      seen.push('x2')
      throw new Error('x2 failed')
    })
    const x3 = queue.run('x', async () => void seen.push('x3'))
    // Another key does not wait behind x.
    await queue.run('y', async () => void seen.push('y'))
    assert.deepEqual(seen, ['y'])
    await new Promise((r) => setImmediate(r))
    assert.equal(queue.size, 1, 'only x is held')
    held.open()
    await x1
    await assert.rejects(x2, /x2 failed/)
    await x3
    assert.deepEqual(seen, ['y', 'x1', 'x2', 'x3'], 'a failure does not stop the next of its key')
    await new Promise((r) => setImmediate(r))
    assert.equal(queue.size, 0, 'no key is held once its line is empty')
  })
})
