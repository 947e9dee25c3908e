/** Waiting on output as it streams in, instead of sleeping. */

/** What a waiter offers: feed it chunks; wait until a text has come; read all so far. */
export interface TextWaiter {
  push(chunk: string): void
  /**
   * Resolves once `text` has appeared in what was pushed (at once if it has); rejects, quoting what
   * came, if it has not within `timeoutMs` (a stream that stopped fails the test instead of hanging it).
   */
  until(text: string, timeoutMs?: number): Promise<void>
  text(): string
}

const DEFAULT_TIMEOUT_MS = 60_000

/** Collects pushed chunks and resolves the waits whose text has come. */
export function waitForText(): TextWaiter {
  let all = ''
  let waiters: { text: string; resolve(): void }[] = []
  return {
    push(chunk) {
      all += chunk
      for (const w of waiters.filter((w) => all.includes(w.text))) w.resolve()
    },
    until(text, timeoutMs = DEFAULT_TIMEOUT_MS) {
      if (all.includes(text)) return Promise.resolve()
      return new Promise((resolve, reject) => {
        const waiter = {
          text,
          resolve() {
            clearTimeout(timer)
            waiters = waiters.filter((w) => w !== waiter)
            resolve()
          },
        }
        const timer = setTimeout(() => {
          waiters = waiters.filter((w) => w !== waiter)
          reject(new Error(`${JSON.stringify(text)} did not come within ${timeoutMs} ms; what came: ${JSON.stringify(all.slice(-2000))}`))
        }, timeoutMs)
        waiters.push(waiter)
      })
    },
    text: () => all,
  }
}
