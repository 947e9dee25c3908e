/**
 * Work that waits for a pause: spares made again after creates took some (a spare disk's mkfs, a
 * network slot's `ip` commands) cost the CPU and kernel locks of the very create, and of its
 * answer, that they ran beside. Each `poke` puts the work off until no poke came for `quietMs`;
 * pokes that never pause that long get it `maxWaitMs` after the first of them.
 */

/** A piece of work put off until a pause. */
export interface WhenQuiet {
  /** Asks for the work, after the next pause (or by the longest wait). */
  poke(): void
  /** Drops a pending run. */
  cancel(): void
}

/** Runs `work` once pokes pause for `quietMs`, or `maxWaitMs` after the first poke that waits; `now` is the clock in milliseconds. */
export function whenQuiet(work: () => void, quietMs: number, maxWaitMs: number, now: () => number = () => performance.now()): WhenQuiet {
  let timer: NodeJS.Timeout | undefined
  let waitingSince: number | null = null
  return {
    poke() {
      clearTimeout(timer)
      const at = now()
      waitingSince ??= at
      timer = setTimeout(() => {
        waitingSince = null
        work()
      }, Math.max(0, Math.min(quietMs, waitingSince + maxWaitMs - at)))
      // A pending refill keeps no process alive.
      timer.unref()
    },
    cancel() {
      clearTimeout(timer)
      waitingSince = null
    },
  }
}
