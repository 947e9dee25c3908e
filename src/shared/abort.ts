import { SandstormError } from './errors.js'

/** Options every call takes. */
export interface CallOptions {
  /** Cancels the call. */
  signal?: AbortSignal
  /** Fails the call with `deadline_exceeded` after this long. */
  timeoutMs?: number
}

/** One signal that fires on the caller's signal or on the deadline, whichever is first. */
export function linkSignal(options: CallOptions = {}): AbortSignal | undefined {
  const signals: AbortSignal[] = []
  if (options.signal) signals.push(options.signal)
  if (options.timeoutMs !== undefined) signals.push(AbortSignal.timeout(options.timeoutMs))
  if (signals.length === 0) return undefined
  return signals.length === 1 ? signals[0] : AbortSignal.any(signals)
}

/** Throws a SandstormError if the signal has fired, saying whether it was a deadline or a cancel. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (!signal?.aborted) return
  const reason = signal.reason as { name?: string } | undefined
  if (reason?.name === 'TimeoutError') throw new SandstormError('deadline_exceeded', 'the deadline passed')
  throw new SandstormError('canceled', 'the operation was canceled')
}
