/** Percentile summaries of samples, and the clock the benchmarks time with. */

/** A distribution of samples, in the unit they were taken in. */
export interface Summary {
  n: number
  min: number
  max: number
  mean: number
  p50: number
  p95: number
  p99: number
}

/** The statistics a goal or a ratio can refer to. */
export type Stat = 'p50' | 'p95' | 'p99' | 'mean'

/**
 * Summarises samples with nearest-rank percentiles: every percentile is a value that was
 * measured, never an interpolation (with n = 40, p99 is the slowest sample).
 */
export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) throw new Error('summarize expected at least one sample, got none')
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
  return {
    n: sorted.length,
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
    p50: rank(50),
    p95: rank(95),
    p99: rank(99),
  }
}

/** Milliseconds since an arbitrary start, with sub-millisecond resolution. */
export const nowMs = (): number => performance.now()

/** Runs `fn` and resolves with how long it took in milliseconds, and what it returned. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = nowMs()
  const value = await fn()
  return { ms: nowMs() - start, value }
}
