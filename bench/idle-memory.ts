/**
 * idle-memory: what an idle sandbox costs the host, with many of them alive at once, measured
 * three ways: its memory cgroup, the PSS of its processes, and the host's MemAvailable.
 */
import { Sandbox } from '@sandstorm/sdk'
import { createBareRunc } from './bare-runc.js'
import { createIdleSandboxes, mapLimit, parallelCreates } from './concurrency.js'
import type { BenchContext, Benchmark } from './context.js'
import { containerMemory, memAvailableBytes, toMiB, type ContainerMemory } from './memory-probe.js'
import type { BenchResult, Figure, Goal } from './report.js'
import { summarize, type Summary } from './stats.js'

const defaultCount = 100
/** The goal: 3 MB an idle sandbox, read as MiB. */
const goal: Goal = { stat: 'mean', atMost: 3 }

/** Per-container figures of one side (Sandstorm or baseline), in MiB. */
interface Side {
  usage: Summary
  rssMapped: Summary
  pss: Summary
  /** MemAvailable before minus after, over the count: a single value. */
  memAvailableDrop: Summary
  processes: number
}

function sideOf(measured: ContainerMemory[], availableBefore: number, availableAfter: number): Side {
  return {
    usage: summarize(measured.map((m) => toMiB(m.usageBytes))),
    rssMapped: summarize(measured.map((m) => toMiB(m.rssMappedBytes))),
    pss: summarize(measured.map((m) => toMiB(m.pssBytes))),
    memAvailableDrop: summarize([toMiB(availableBefore - availableAfter) / measured.length]),
    processes: measured.reduce((a, m) => a + m.processes, 0),
  }
}

/**
 * Holds `count` Sandstorm sandboxes at once, measures them, and destroys them all (also on
 * failure); failed destroys are noted in `notes` (the runner's final cleanup tries again).
 */
async function measureSandstorm(ctx: BenchContext, count: number, notes: string[]): Promise<Side> {
  const ids: string[] = []
  try {
    const before = await memAvailableBytes()
    await createIdleSandboxes(ctx, count, ids, 'idle-memory', 25)
    const after = await memAvailableBytes()
    const measured = await Promise.all(ids.map((id) => containerMemory(`/sandstorm/${id}`)))
    return sideOf(measured, before, after)
  } finally {
    ctx.progress(`idle-memory: destroying ${ids.length} sandboxes`)
    const failed: string[] = []
    // One at a time: concurrent destroys make runc's `list` (which destroy polls) fail now and then
    // when another container's state dir vanishes under it, and the agent then forgets the sandbox.
    await mapLimit(ids, 1, (id) =>
      Sandbox.kill(id, { ...ctx.stack.conn }).catch((err: unknown) => failed.push(`${id}: ${err instanceof Error ? err.message : String(err)}`)),
    )
    if (failed.length > 0) notes.push(`${failed.length} of ${ids.length} destroys failed, e.g. ${failed[0]}`)
  }
}

/** The same for bare runc busybox containers. */
async function measureBare(ctx: BenchContext, count: number): Promise<Side> {
  const bare = await createBareRunc()
  const ids: string[] = []
  try {
    const before = await memAvailableBytes()
    await mapLimit(
      Array.from({ length: count }, (_, i) => `bench-idle-${i}`),
      parallelCreates,
      async (id) => {
        await bare.run(id)
        ids.push(id)
      },
      ctx.signal,
    )
    const after = await memAvailableBytes()
    const measured = await Promise.all(ids.map((id) => containerMemory(bare.cgroupPath(id))))
    return sideOf(measured, before, after)
  } finally {
    ctx.leftovers(await bare.close())
  }
}

/** The idle-memory benchmark. */
export const idleMemoryBenchmark: Benchmark = {
  name: 'idle-memory',
  title: 'host memory per idle sandbox, many alive at once',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const count = ctx.iterations ?? defaultCount
    const destroyNotes: string[] = []
    const subject = await measureSandstorm(ctx, count, destroyNotes)
    const base = await measureBare(ctx, count)
    const baseWhat = 'bare runc busybox sleep'
    const figure = (what: string, pick: (s: Side) => Summary): Figure => ({
      what,
      unit: 'MiB',
      subject: pick(subject),
      baseline: { what: baseWhat, summary: pick(base) },
      goal,
    })
    return {
      name: 'idle-memory',
      title: `${this.title} (${count} sandboxes, created ${parallelCreates} at a time)`,
      figures: [
        figure('(a) cgroup memory.usage_in_bytes per sandbox', (s) => s.usage),
        figure('(a) cgroup memory.stat rss + mapped_file per sandbox', (s) => s.rssMapped),
        figure('(b) PSS of the sandbox processes per sandbox', (s) => s.pss),
        figure('(c) MemAvailable drop / count', (s) => s.memAvailableDrop),
      ],
      notes: [
        `the goal (3 MB) is read as 3 MiB and applies to the mean, which is the sum over sandboxes divided by ${count}`,
        `processes counted: ${subject.processes} in the sandboxes, ${base.processes} in the bare containers`,
        '(a) usage_in_bytes includes page cache and kernel memory (page tables, dentries of the overlay); (c) also includes what the server and agent grew by, so it is the widest measure; n=1 for (c)',
        ...destroyNotes,
      ],
    }
  },
}
