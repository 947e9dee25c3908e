/** Polling a read of the API while a component is shown. */
import { useCallback, useEffect, useRef, useState } from 'preact/hooks'
import { messageOf } from './api.js'

/** What usePoll holds: the last value read, the last error (cleared by the next good read), and a way to read now. */
export interface Polled<T> {
  value: T | undefined
  error: string | undefined
  refresh(): void
}

/**
 * Reads `read()` now and every `intervalMs` after the previous read ended (never two at once),
 * again whenever `deps` change, and not after the component is gone.
 */
export function usePoll<T>(read: () => Promise<T>, intervalMs: number, deps: unknown[] = []): Polled<T> {
  const [value, setValue] = useState<T | undefined>(undefined)
  const [error, setError] = useState<string | undefined>(undefined)
  const readRef = useRef(read)
  readRef.current = read
  const kick = useRef<() => void>(() => undefined)

  useEffect(() => {
    let stopped = false
    let timer: ReturnType<typeof setTimeout> | undefined
    let busy = false
    let again = false
    const tick = async (): Promise<void> => {
      clearTimeout(timer)
      if (busy) {
        again = true
        return
      }
      busy = true
      try {
        const v = await readRef.current()
        if (!stopped) {
          setValue(() => v)
          setError(undefined)
        }
      } catch (err) {
        if (!stopped) setError(messageOf(err))
      } finally {
        busy = false
        if (!stopped) timer = setTimeout(() => void tick(), again ? 0 : intervalMs)
        again = false
      }
    }
    kick.current = () => void tick()
    void tick()
    return () => {
      stopped = true
      clearTimeout(timer)
    }
  }, [intervalMs, ...deps])

  const refresh = useCallback(() => kick.current(), [])
  return { value, error, refresh }
}
