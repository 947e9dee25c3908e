/** Waiting in integration tests for what the server offers no event for. */
import { setTimeout as delay } from 'node:timers/promises'

/**
 * Re-checks `check` every 100 ms until it gives a truthy value, and returns that value. A check
 * that throws is tried again; after `timeoutMs` it fails with what it waited for and the last error.
 */
export async function until<T>(what: string, check: () => Promise<T | undefined | null | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value) return value
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`)
    await delay(100)
  }
}
