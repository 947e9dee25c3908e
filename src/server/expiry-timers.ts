/**
 * One timer per sandbox, armed for its `expiresAt`.
 *
 * Why not one sweeping timer: a per-sandbox timer fires at the exact moment, costs nothing while
 * nothing expires, and extending a sandbox is just re-arming its own timer. A machine holds at
 * most thousands of sandboxes, and Node keeps timers in a list per duration, so this stays cheap.
 */
export interface ExpiryTimers {
  /** Arms (or re-arms) the timer of one sandbox. A time in the past fires at once. */
  arm(id: string, expiresAtMs: number): void
  disarm(id: string): void
  /** Disarms all; later `arm` calls are ignored (the server is closing). */
  clear(): void
  /** How many timers are armed. */
  readonly size: number
}

/** Options of createExpiryTimers. */
export interface ExpiryTimersOptions {
  /** Called when a sandbox's time is up; it should check the catalog, as the time may have moved. */
  onExpire(id: string): void
  /** @default Date.now */
  now?: () => number
}

// setTimeout cannot wait longer than this; longer waits are done in steps.
export const maxDelayMs = 2 ** 31 - 1

/** Creates the timers. They are unref'd: an armed timer never keeps a process alive on its own. */
export function createExpiryTimers(options: ExpiryTimersOptions): ExpiryTimers {
  const now = options.now ?? Date.now
  const timers = new Map<string, NodeJS.Timeout>()
  let closed = false

  const arm = (id: string, expiresAtMs: number): void => {
    if (closed) return
    clearTimeout(timers.get(id))
    const delayMs = Math.max(0, expiresAtMs - now())
    const timer = setTimeout(() => {
      timers.delete(id)
      if (delayMs > maxDelayMs) arm(id, expiresAtMs)
      else options.onExpire(id)
    }, Math.min(delayMs, maxDelayMs))
    timer.unref()
    timers.set(id, timer)
  }

  return {
    arm,
    disarm(id) {
      clearTimeout(timers.get(id))
      timers.delete(id)
    },
    clear() {
      closed = true
      for (const timer of timers.values()) clearTimeout(timer)
      timers.clear()
    },
    get size() {
      return timers.size
    },
  }
}
