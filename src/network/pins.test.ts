import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SandstormError } from '../shared/index.js'
import { createPinSet, type Pin } from './pins.js'

/** A pin set over a recorded writer whose transactions finish when the test says. */
function recorded(max = 100) {
  const writes: string[][] = []
  const gates: (() => void)[] = []
  let clock = 1_000_000
  const set = createPinSet({
    max,
    now: () => clock,
    write: async (pins) => {
      writes.push(pins.map((p) => `${p.address}/${p.ttlS}`))
      await new Promise<void>((resolve) => gates.push(resolve))
    },
  })
  /** Lets queued steps reach their writer. */
  const tick = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
  }
  /** Finishes every transaction that is being written. */
  const release = async (): Promise<void> => {
    await tick()
    for (const open of gates.splice(0)) open()
    await tick()
  }
  return { set, writes, tick, release, advance: (ms: number) => (clock += ms) }
}

const pins = (...addresses: string[]): Pin[] => addresses.map((address) => ({ address, ttlS: 600 }))
const always = (): boolean => true

describe('a sandbox\'s pins', () => {
  it('writes the pins that come while a transaction runs together, in one next transaction', async () => {
    const { set, writes, tick, release } = recorded()
    const first = set.pin(pins('198.19.0.1'), always)
    await release()
    await first
    const held = set.pin(pins('198.19.0.2'), always)
    await tick()
    // Ten answers while that one is written: one transaction for all of them.
    const queued = Array.from({ length: 10 }, (_, i) => set.pin(pins(`198.19.1.${i}`), always))
    await release()
    await held
    await release()
    await Promise.all(queued)
    assert.equal(writes.length, 3)
    assert.equal(writes[2]!.length, 10)
  })

  it('does not write an address again while it stays pinned for at least half its time', async () => {
    const { set, writes, release, advance } = recorded()
    const p = set.pin(pins('198.19.0.1'), always)
    await release()
    await p
    for (let i = 0; i < 50; i++) await set.pin(pins('198.19.0.1'), always)
    assert.equal(writes.length, 1, 'each answer for a pinned address cost a transaction')
    advance(301_000)
    const again = set.pin(pins('198.19.0.1'), always)
    await release()
    await again
    assert.equal(writes.length, 2, 'a pin near its end was not renewed')
  })

  it('refuses pins past the most a sandbox may hold, and takes new ones once old ones end', async () => {
    const { set, release, advance } = recorded(3)
    const p = set.pin(pins('198.19.0.1', '198.19.0.2', '198.19.0.3'), always)
    await release()
    await p
    await assert.rejects(set.pin(pins('198.19.0.4'), always), (err: unknown) => err instanceof SandstormError && err.code === 'resource_exhausted')
    assert.equal(set.size, 3)
    advance(601_000)
    const later = set.pin(pins('198.19.0.4'), always)
    await release()
    await later
    assert.equal(set.size, 1)
  })

  it('drops pins checked under a policy that was replaced before they were written, and forgets the flushed ones', async () => {
    const { set, writes, tick, release } = recorded()
    let policy = 1
    const written = set.pin(pins('198.19.0.1'), always)
    await release()
    await written
    const changes: string[] = []
    // A transaction runs; then a policy change is queued, and behind it an answer of the old policy.
    const running = set.pin(pins('198.19.0.2'), always)
    await tick()
    const replaced = set.replace(async () => {
      changes.push(`policy ${policy} replaced`)
      policy = 2
    })
    const stale = set.pin(pins('198.19.0.3'), () => policy === 1)
    await release()
    await Promise.all([running, replaced])
    await release()
    await stale
    assert.deepEqual(writes.flat(), ['198.19.0.1/600', '198.19.0.2/600'], 'a pin of the old policy was written after the change')
    assert.deepEqual(changes, ['policy 1 replaced'])
    assert.equal(set.size, 0, 'pins the change flushed are still counted')
    // The change emptied the set: the next answer for an address pinned before writes it again.
    const renewed = set.pin(pins('198.19.0.1'), () => policy === 2)
    await release()
    await renewed
    assert.deepEqual(writes.at(-1), ['198.19.0.1/600'])
  })
})
