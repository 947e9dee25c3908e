/** Running work a few at a time. */
import { Sandbox } from '@sandstorm/sdk'
import type { BenchContext } from './context.js'

/** Creates at once, for benchmarks that fill the host: enough to overlap, few enough not to thrash 2 cores. */
export const parallelCreates = 4

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

/**
 * Creates `count` idle debian sandboxes on the bench's stack, a few at a time, and records them
 * for its cleanup; reports progress every `progressEvery`. Ids are pushed into `ids` as they come,
 * so that a failure part way still leaves the caller the ones to destroy.
 */
export async function createIdleSandboxes(ctx: BenchContext, count: number, ids: string[], label: string, progressEvery: number): Promise<void> {
  await mapLimit(
    Array.from({ length: count }, (_, i) => i),
    parallelCreates,
    async (i) => {
      const sandbox = await Sandbox.create('debian', { ...ctx.stack.conn })
      ids.push(sandbox.sandboxId)
      ctx.stack.ids.add(sandbox.sandboxId)
      if ((i + 1) % progressEvery === 0) ctx.progress(`${label}: ${ids.length}/${count} sandboxes`)
    },
    ctx.signal,
  )
}
