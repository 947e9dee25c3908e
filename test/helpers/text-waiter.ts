/** Waiting on output as it streams in, instead of sleeping. */

/** What a waiter offers: feed it chunks; wait until a text has come; read all so far. */
export interface TextWaiter {
  push(chunk: string): void
  /** Resolves once `text` has appeared in what was pushed (at once if it has). */
  until(text: string): Promise<void>
  text(): string
}

/** Collects pushed chunks and resolves the waits whose text has come. */
export function waitForText(): TextWaiter {
  let all = ''
  const waiters: { text: string; resolve(): void }[] = []
  return {
    push(chunk) {
      all += chunk
      for (const w of waiters.filter((w) => all.includes(w.text))) w.resolve()
    },
    until(text) {
      if (all.includes(text)) return Promise.resolve()
      return new Promise((resolve) => waiters.push({ text, resolve }))
    },
    text: () => all,
  }
}
