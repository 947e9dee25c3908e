/** A signal that follows its parent only until `release()`. */
export interface ScopedSignal {
  signal: AbortSignal
  /** Stops following the parent: later aborts of the parent no longer reach `signal`. */
  release(): void
}

/**
 * A signal for one call that starts something long-lived. An exec's signal must cancel the start
 * only: a backend may tie the started process to it, and a client that goes away after the start
 * must not kill the command (it can be followed again).
 */
export function scopedSignal(parent: AbortSignal): ScopedSignal {
  const controller = new AbortController()
  const onAbort = (): void => controller.abort(parent.reason)
  if (parent.aborted) onAbort()
  else parent.addEventListener('abort', onAbort, { once: true })
  return { signal: controller.signal, release: () => parent.removeEventListener('abort', onAbort) }
}
