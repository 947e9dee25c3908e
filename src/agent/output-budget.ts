/**
 * One sandbox's budget for the output its running processes keep for late followers. Each process
 * keeps up to 8 MiB of its own (process-record.ts); a sandbox may run a thousand processes, so
 * without a shared bound one sandbox could make the agent hold gigabytes.
 */

/** A process whose kept output the budget may cut. */
export interface OutputHolder {
  /** Bytes it keeps now, with what each kept event costs. */
  readonly outputBytes: number
  /** Drops its oldest output until it keeps `maxBytes` or less (its newest event stays); returns the bytes dropped. */
  dropOldestTo(maxBytes: number): number
}

/** Options of OutputBudget. */
export interface OutputBudgetOptions {
  /** Output kept by the sandbox's running processes between them. @default 64 MiB */
  limitBytes?: number
  /** What a process keeps however many others print: its newest output. @default 64 KiB */
  tailBytes?: number
}

/**
 * Past the limit, the process that keeps the most loses its oldest output, down to its tail, until
 * the total is an eighth under the limit (so that the search for the biggest runs once per few MiB
 * printed, not per chunk). A thousand processes' tails (64 MiB) are what may stay above the limit.
 */
export class OutputBudget {
  readonly limitBytes: number
  readonly tailBytes: number
  private readonly holders = new Set<OutputHolder>()
  private total = 0
  /**
   * The total past which the next cut runs: the limit, or (after a cut that found nothing left
   * but tails to take) an eighth above where that cut stopped, so that the scan of every holder
   * runs once per few MiB printed then too, not once per chunk.
   */
  private cutAbove: number

  constructor(options: OutputBudgetOptions = {}) {
    this.limitBytes = options.limitBytes ?? 64 * 1024 * 1024
    this.tailBytes = options.tailBytes ?? 64 * 1024
    this.cutAbove = this.limitBytes
  }

  /** Bytes kept by the processes counted now. */
  get totalBytes(): number {
    return this.total
  }

  /** Counts `delta` more (or, negative, fewer) bytes kept by `holder`, then cuts back to the budget. */
  charge(holder: OutputHolder, delta: number): void {
    this.holders.add(holder)
    this.total += delta
    if (this.total > this.cutAbove) this.cut()
  }

  /** Stops counting a process (it ended: the agent's rule for finished ones holds it from then). */
  release(holder: OutputHolder): void {
    if (this.holders.delete(holder)) this.total -= holder.outputBytes
    if (this.total <= this.limitBytes) this.cutAbove = this.limitBytes
  }

  private cut(): void {
    const eighth = Math.floor(this.limitBytes / 8)
    const target = this.limitBytes - eighth
    while (this.total > target) {
      let biggest: OutputHolder | undefined
      for (const h of this.holders) if (!biggest || h.outputBytes > biggest.outputBytes) biggest = h
      const keep = biggest ? Math.max(this.tailBytes, biggest.outputBytes - (this.total - target)) : 0
      // Nothing but tails, or a newest event alone over the tail: nothing more to take now.
      const dropped = biggest && biggest.outputBytes > this.tailBytes ? biggest.dropOldestTo(keep) : 0
      this.total -= dropped
      if (dropped === 0) break
    }
    this.cutAbove = this.total > target ? Math.max(this.limitBytes, this.total + eighth) : this.limitBytes
  }
}
