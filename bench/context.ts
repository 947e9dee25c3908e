/** What every benchmark gets from the runner, and what it gives back. */
import type { BenchStack } from './bench-stack.js'
import type { BenchResult } from './report.js'

/** The runner's side of a benchmark run. */
export interface BenchContext {
  stack: BenchStack
  /** `--iterations N`: replaces the benchmark's own sample count (idle-memory: its sandbox count). */
  iterations: number | undefined
  /** Fires on Ctrl-C: stop between samples and clean up. */
  signal: AbortSignal
  /** A progress line on stderr (stdout is kept for the report). */
  progress(line: string): void
  /** Records what a cleanup could not remove; the runner prints it at the end. */
  leftovers(items: string[]): void
}

/** One benchmark. */
export interface Benchmark {
  name: string
  title: string
  run(ctx: BenchContext): Promise<BenchResult>
}

/** Throws once Ctrl-C was pressed, so that a benchmark unwinds through its cleanup. */
export function checkAborted(signal: AbortSignal): void {
  if (signal.aborted) throw new Error('interrupted')
}
