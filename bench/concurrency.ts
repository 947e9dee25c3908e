/** Running work a few at a time. */

/**
 * Calls `fn` for every item with at most `limit` calls in flight, and resolves with the results
 * in item order. Stops starting new calls after the first failure or once `signal` fires, waits for
 * the calls in flight, then rejects.
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>, signal?: AbortSignal): Promise<R[]> {
  const results: R[] = new Array<R>(items.length)
  let next = 0
  let failure: { error: unknown } | undefined
  const worker = async () => {
    while (!failure && next < items.length) {
      if (signal?.aborted) {
        failure ??= { error: new Error('interrupted') }
        return
      }
      const i = next++
      try {
        results[i] = await fn(items[i]!)
      } catch (error) {
        failure ??= { error }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  if (failure) throw failure.error
  return results
}
