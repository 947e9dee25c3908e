import { outputEventOverheadBytes, type ExecEvent, type ProcessInfo, type ProcessResult } from '../shared/index.js'
import type { RuntimeProcess } from '../runtime/index.js'
import type { OutputBudget, OutputHolder } from './output-budget.js'

/** Output kept per process for followers that attach late; older output is dropped past this. */
const keptOutputBytes = 8 * 1024 * 1024
/** Counted per kept event beside its bytes: a process printing a byte at a time keeps some 30,000 events, not 8 million. */
const eventOverheadBytes = outputEventOverheadBytes

/**
 * One started command: its live process, the output it has produced (for replay), and the
 * followers waiting for more. Events are indexed absolutely so that dropping old ones is safe.
 * While it runs, what it keeps also counts against its sandbox's budget (output-budget.ts), which
 * may take its oldest output when it keeps the most.
 */
export class ProcessRecord implements OutputHolder {
  readonly startedAt = new Date()
  result: ProcessResult | null = null
  /**
   * The kept events are `events[head..]`: dropping the oldest moves `head`, and the array is
   * compacted once most of it is dropped. An Array shift moves every element: at some 30,000 kept
   * events, a process printing a byte at a time cost the agent 50 µs per byte.
   */
  private events: (ExecEvent | undefined)[] = []
  private head = 0
  /** Events dropped since the start: the absolute index of the oldest kept one. */
  private dropped = 0
  private keptBytes = 0
  private wakeups = new Set<() => void>()
  private failure: Error | null = null

  constructor(
    readonly pid: number,
    readonly argv: string[],
    readonly cwd: string,
    readonly process: RuntimeProcess,
    private readonly budget?: OutputBudget,
  ) {
    // A result rejects when the sandbox goes under its process (a VM's guest agent channel
    // closes): its followers hear that error instead of waiting for an end that never comes.
    void process.result.then(
      (result) => {
        this.result = result
        this.budget?.release(this)
        this.push({ type: 'end', result })
      },
      (err: unknown) => {
        this.budget?.release(this)
        this.failure = err instanceof Error ? err : new Error(String(err))
        for (const wake of this.wakeups) wake()
        this.wakeups.clear()
      },
    )
  }

  /** Bytes of output kept, with what keeping each event costs. */
  get outputBytes(): number {
    return this.keptBytes
  }

  /** Adds output; called by the runtime's sink. */
  output(type: 'stdout' | 'stderr', chunk: Uint8Array): void {
    this.push({ type, data: Buffer.from(chunk).toString('base64') })
    const added = chunk.byteLength + eventOverheadBytes
    const before = this.keptBytes
    this.keptBytes += added
    while (this.keptBytes > keptOutputBytes && this.kept > 1) this.dropFirst()
    // Output that comes after the end (a late pipe) is the finished processes' rule's.
    if (this.result === null && !this.failure) this.budget?.charge(this, this.keptBytes - before)
  }

  /**
   * For the sandbox's budget: drops the oldest output until `maxBytes` or less are kept. The event
   * that would take it under is cut to its newest bytes instead (one chunk of a pipe may be far
   * more than a tail); returns the bytes dropped.
   */
  dropOldestTo(maxBytes: number): number {
    const before = this.keptBytes
    while (this.keptBytes > maxBytes && this.kept > 0) {
      const old = this.events[this.head]!
      if (old.type !== 'stdout' && old.type !== 'stderr') {
        if (this.kept === 1) break
        this.dropFirst()
        continue
      }
      const bytes = Buffer.byteLength(old.data, 'base64')
      const excess = this.keptBytes - maxBytes
      if (excess >= bytes + eventOverheadBytes && this.kept > 1) {
        this.dropFirst()
        continue
      }
      // A new object in its slot: a follower may still hold the old one.
      const cut = Math.min(excess, bytes)
      this.events[this.head] = { type: old.type, data: Buffer.from(old.data, 'base64').subarray(cut).toString('base64') }
      this.keptBytes -= cut
      break
    }
    return before - this.keptBytes
  }

  /** How many events are kept. */
  private get kept(): number {
    return this.events.length - this.head
  }

  private dropFirst(): void {
    const old = this.events[this.head]
    this.events[this.head] = undefined
    this.head++
    this.dropped++
    if (this.head >= 1024 && this.head * 2 >= this.events.length) {
      this.events = this.events.slice(this.head)
      this.head = 0
    }
    if (old && old.type !== 'start' && old.type !== 'end') this.keptBytes -= Buffer.byteLength(old.data, 'base64') + eventOverheadBytes
  }

  private push(event: ExecEvent): void {
    this.events.push(event)
    for (const wake of this.wakeups) wake()
    this.wakeups.clear()
  }

  /** Yields `start`, the output kept so far, then live output until `end`, or until the signal fires. */
  async *follow(signal?: AbortSignal): AsyncIterable<ExecEvent> {
    yield { type: 'start', pid: this.pid }
    let next = this.dropped
    while (!signal?.aborted) {
      // Checked again after every yield: while a slow follower was away, old events may have
      // been dropped, and it goes on from the oldest one still kept.
      next = Math.max(next, this.dropped)
      if (next < this.dropped + this.kept) {
        const event = this.events[this.head + next - this.dropped]!
        next++
        yield event
        if (event.type === 'end') return
        continue
      }
      if (this.failure) throw this.failure
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal?.removeEventListener('abort', wake)
          resolve()
        }
        this.wakeups.add(wake)
        signal?.addEventListener('abort', wake, { once: true })
      })
    }
  }

  /** The record as listed. */
  info(): ProcessInfo {
    return {
      pid: this.pid,
      argv: this.argv,
      cwd: this.cwd,
      startedAt: this.startedAt.toISOString(),
      running: this.result === null,
      result: this.result,
    }
  }
}
