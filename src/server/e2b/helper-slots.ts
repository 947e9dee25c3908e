/** How many file helpers run in one sandbox at once; the rest wait their turn, in order. */
import { SandstormError, type Logger } from '../../shared/index.js'

/** Turns to run helpers, per sandbox. */
export interface HelperSlots {
  /** Runs `work` once one of the sandbox's slots is free; a caller that goes away while waiting (`signal`) starts nothing. */
  run<T>(sandboxId: string, work: () => Promise<T>, options?: { signal?: AbortSignal }): Promise<T>
}

/** Options of createHelperSlots. */
export interface HelperSlotsOptions {
  /** Helpers of one sandbox that run at once. @default 4 */
  perSandbox?: number
  /** Where a call that has to wait is logged (debug). */
  logger?: Logger
}

/**
 * Each helper's answer (a listing, up to 64 MiB) is held whole until parsed: without a bound, a
 * caller of one sandbox multiplies that by the calls it makes at once. `perSandbox` at a time, a
 * queue behind them.
 */
export function createHelperSlots(options: HelperSlotsOptions = {}): HelperSlots {
  const perSandbox = options.perSandbox ?? 4
  const sandboxes = new Map<string, { running: number; waiting: (() => void)[] }>()

  const acquire = async (sandboxId: string, signal: AbortSignal | undefined): Promise<void> => {
    signal?.throwIfAborted()
    let state = sandboxes.get(sandboxId)
    if (!state) sandboxes.set(sandboxId, (state = { running: 0, waiting: [] }))
    if (state.running < perSandbox) {
      state.running++
      return
    }
    const queue = state.waiting
    options.logger?.debug({ sandboxId, waiting: queue.length + 1 }, 'file helper waits for a free slot')
    await new Promise<void>((resolve, reject) => {
      // A released slot passes straight to the next waiter: `running` stays as it is.
      const turn = (): void => {
        signal?.removeEventListener('abort', gone)
        resolve()
      }
      const gone = (): void => {
        queue.splice(queue.indexOf(turn), 1)
        reject(signal?.reason ?? new SandstormError('canceled', 'the call was canceled while it waited for a helper'))
      }
      queue.push(turn)
      signal?.addEventListener('abort', gone, { once: true })
    })
  }

  const release = (sandboxId: string): void => {
    const state = sandboxes.get(sandboxId)
    if (!state) return
    const next = state.waiting.shift()
    if (next) return next()
    state.running--
    if (state.running === 0) sandboxes.delete(sandboxId)
  }

  return {
    async run(sandboxId, work, call = {}) {
      await acquire(sandboxId, call.signal)
      try {
        return await work()
      } finally {
        release(sandboxId)
      }
    },
  }
}
