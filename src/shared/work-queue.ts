/** Work that must not overlap: run one at a time, in the order asked. */

/** One line of work. */
export interface SerialQueue {
  /** Runs `work` once every earlier work has settled (a failure does not stop the next); settles as it does. */
  run<T>(work: () => Promise<T>): Promise<T>
}

/** One line of work per key (a sandbox, a template); a key with nothing queued holds nothing. */
export interface KeyedQueue<K> {
  /** Runs `work` once every earlier work of `key` has settled (a failure does not stop the next); settles as it does. */
  run<T>(key: K, work: () => Promise<T>): Promise<T>
  /** How many keys have work queued or running. */
  readonly size: number
}

/** A single line of work. */
export function createSerialQueue(): SerialQueue {
  let tail: Promise<unknown> = Promise.resolve()
  return {
    run(work) {
      const run = tail.then(work)
      tail = run.catch(() => undefined)
      return run
    },
  }
}

/** A line of work per key. */
export function createKeyedQueue<K = string>(): KeyedQueue<K> {
  const tails = new Map<K, Promise<unknown>>()
  return {
    run(key, work) {
      const run = (tails.get(key) ?? Promise.resolve()).then(work)
      const settled = run.catch(() => undefined)
      tails.set(key, settled)
      void settled.then(() => tails.get(key) === settled && tails.delete(key))
      return run
    },
    get size() {
      return tails.size
    },
  }
}
