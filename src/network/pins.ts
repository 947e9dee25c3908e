/**
 * A sandbox's pins: the addresses its resolver answered for allowed names, which nftables lets
 * it reach for a while. Pins and policy changes of one sandbox run one at a time, in order, so a
 * pin made under an old policy can never land in the new policy's set. Pins that arrive while a
 * transaction runs go together in the next one, and an address already pinned for at least half
 * its time again is not written again: a sandbox asking the same names in a loop costs no
 * transaction per answer. A sandbox holds at most `max` live pins; past that its answers fail.
 */
import { createSerialQueue, SandstormError } from '../shared/index.js'

/** An address to pin, and for how long. */
export interface Pin {
  address: string
  ttlS: number
}

/** Options of createPinSet. */
export interface PinSetOptions {
  /** Writes pins into the sandbox's set (one transaction). */
  write(pins: Pin[]): Promise<void>
  /** How many live pins a sandbox may hold. */
  max: number
  /** The clock, in ms. @default Date.now */
  now?: () => number
}

/** One sandbox's pins. */
export interface PinSet {
  /**
   * Pins `pins`, unless `current()` is false by the time their transaction runs (the policy they
   * were checked under has been replaced): then they are dropped. Rejects with
   * `resource_exhausted` when the sandbox would hold more than `max` pins.
   */
  pin(pins: Pin[], current: () => boolean): Promise<void>
  /** Runs a change of the policy in turn; the set is empty after it (the change flushed it). */
  replace(change: () => Promise<void>): Promise<void>
  /** Live pins, as far as this side knows. */
  readonly size: number
}

interface Batch {
  pins: Map<string, { ttlS: number; current: () => boolean }>
  done: Promise<void>
}

/** An empty pin set. */
export function createPinSet(options: PinSetOptions): PinSet {
  const now = options.now ?? Date.now
  /** Pinned addresses and when their pins end (ms). */
  const live = new Map<string, number>()
  /** The sandbox's transactions, one at a time. */
  const transactions = createSerialQueue()
  /** The batch that has not started yet; pins join it. */
  let open: Batch | undefined

  const prune = (): void => {
    const t = now()
    for (const [address, end] of live) if (end <= t) live.delete(address)
  }

  const startBatch = (): Batch => {
    const batch: Batch = { pins: new Map(), done: Promise.resolve() }
    batch.done = transactions.run(async () => {
      if (open === batch) open = undefined
      const pins = [...batch.pins].filter(([, p]) => p.current()).map(([address, p]) => ({ address, ttlS: p.ttlS }))
      if (pins.length === 0) return
      const start = now()
      await options.write(pins)
      for (const p of pins) live.set(p.address, Math.max(live.get(p.address) ?? 0, start + p.ttlS * 1000))
    })
    return batch
  }

  return {
    pin(pins, current) {
      const t = now()
      // Already pinned for at least half the time asked: no transaction.
      const wanted = pins.filter((p) => (live.get(p.address) ?? 0) < t + (p.ttlS * 1000) / 2)
      if (wanted.length === 0) return Promise.resolve()
      const batch = (open ??= startBatch())
      const fresh = wanted.filter((p) => !live.has(p.address) && !batch.pins.has(p.address)).length
      if (fresh > 0 && live.size + batch.pins.size + fresh > options.max) prune()
      if (live.size + batch.pins.size + fresh > options.max) {
        return Promise.reject(new SandstormError('resource_exhausted', `the sandbox holds ${live.size} pinned addresses, the most it may (${options.max}); older ones expire after their TTL`))
      }
      for (const p of wanted) {
        const before = batch.pins.get(p.address)
        batch.pins.set(p.address, { ttlS: Math.max(before?.ttlS ?? 0, p.ttlS), current })
      }
      return batch.done
    },
    replace(change) {
      return transactions.run(async () => {
        try {
          await change()
        } finally {
          live.clear()
        }
      })
    },
    get size() {
      return live.size
    },
  }
}
