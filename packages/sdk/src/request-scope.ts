/**
 * The life of one HTTP request: the caller's signal and the request deadline joined into one
 * signal, and any failure turned into an SDK error that says which of them ended it.
 */
import { AbortError, ConnectionError, SandstormSdkError, TimeoutError } from './errors.js'

/** One request's cancellation, deadline and error translation. */
export interface RequestScope {
  /** Fires on the caller's signal or the deadline. */
  readonly signal: AbortSignal
  /** The answer has started: from now on only the caller's signal can end it. */
  endDeadline(): void
  /** Drops the timer and the listener on the caller's signal. Safe to call twice. */
  release(): void
  /** Turns whatever fetch or a body read threw into an SDK error. */
  translate(err: unknown): SandstormSdkError
}

/** Opens a scope; throws AbortError at once if the caller's signal has already fired. */
export function createRequestScope(what: string, apiUrl: string, callerSignal: AbortSignal | undefined, timeoutMs: number): RequestScope {
  if (callerSignal?.aborted) throw new AbortError(`${what} was aborted before it was sent`, { cause: callerSignal.reason })
  const controller = new AbortController()
  let ended: 'caller' | 'deadline' | undefined
  const onAbort = (): void => {
    ended ??= 'caller'
    controller.abort(callerSignal?.reason)
  }
  callerSignal?.addEventListener('abort', onAbort, { once: true })
  let timer: ReturnType<typeof setTimeout> | undefined
  if (timeoutMs > 0) {
    timer = setTimeout(() => {
      ended ??= 'deadline'
      controller.abort(new DOMException(`${what} had no answer within ${timeoutMs} ms`, 'TimeoutError'))
    }, timeoutMs)
  }
  return {
    signal: controller.signal,
    endDeadline() {
      clearTimeout(timer)
    },
    release() {
      clearTimeout(timer)
      callerSignal?.removeEventListener('abort', onAbort)
    },
    translate(err) {
      if (ended === 'caller') return new AbortError(`${what} was aborted`, { cause: callerSignal?.reason ?? err })
      if (ended === 'deadline') {
        return new TimeoutError(`${what} had no answer from ${apiUrl} within ${timeoutMs} ms (requestTimeoutMs; 0 means no limit)`, undefined, { cause: err })
      }
      if (err instanceof SandstormSdkError) return err
      const code = networkCode(err)
      if (code) {
        return new ConnectionError(
          'unavailable',
          `cannot reach the Sandstorm server at ${apiUrl} (${code}): start one with "sandstorm up", or point SANDSTORM_URL / apiUrl at it`,
          { cause: err },
        )
      }
      const message = err instanceof Error ? err.message : String(err)
      return new SandstormSdkError('internal', `${what} failed: ${message}`, { cause: err })
    },
  }
}

/** The errno-like code of a network failure inside fetch's TypeError, if that is what this is. */
function networkCode(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined
  const cause = (err as { cause?: unknown }).cause as { code?: unknown; message?: unknown } | undefined
  const code = cause && typeof cause.code === 'string' ? cause.code : undefined
  if (code && (/^E[A-Z]+$/.test(code) || code.startsWith('UND_ERR_'))) return code
  // undici says "fetch failed" when it could not connect, "terminated" when a connection died mid-body.
  if (err.name === 'TypeError' && (err.message === 'fetch failed' || err.message === 'terminated')) {
    return code ?? (typeof cause?.message === 'string' ? cause.message : err.message)
  }
  return undefined
}
