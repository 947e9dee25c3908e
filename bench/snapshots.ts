/**
 * snapshots: a snapshot of a sandbox that changed 10 MB in 1,000 files, a fork of 8 (cold, and from
 * a warm pool of 8), and a tree-search loop (restore a node, run a command, snapshot the child), each beside a baseline
 * measured in the same run.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { deletePool, deleteSnapshot, listPools, Sandbox, setPool, waitForPool } from '@sandstorm/sdk'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import type { BenchResult } from './report.js'
import { nowMs, summarize } from './stats.js'

/**
 * Writes 1,000 files of 10 KiB (10 MB) under /work, overwriting the last round's: one `split` of
 * 10 MB of random bytes (f000 to f999), not 1,000 processes, so that a round takes a moment.
 */
const writeTenMegabytes = 'mkdir -p /work && head -c 10240000 /dev/urandom | split -b 10240 -a 3 -d - /work/f'

/** How long the fork rows wait before each timed burst, for the spare disks a burst took to be made again. */
const spareRefillMs = 1500

/** The floor a snapshot is measured beside: the same work done on the host, timed per round. */
export interface SnapshotBaseline {
  what: string
  /** Makes what each round needs (outside the timing). */
  setup(): Promise<void>
  /** Untimed work before each round (writing the tree afresh, say). */
  beforeRound?(i: number): Promise<void>
  /** One timed round. */
  round(i: number): Promise<void>
  cleanup(): Promise<void>
  /** A line for the notes. */
  note?: string
}

/** Baseline of the overlay driver: `cp -a` of a tree of 1,000 files of 10 KiB on the host. */
async function copyBaseline(): Promise<SnapshotBaseline> {
  const host = await mkdtemp(join(tmpdir(), 'sandstorm-bench-copy-'))
  return {
    what: 'cp -a of the same size of tree on the host',
    setup: () => execa('sh', ['-c', writeTenMegabytes.replaceAll('/work', join(host, 'src'))]).then(() => undefined),
    round: (i) => execa('cp', ['-a', join(host, 'src'), join(host, `copy-${i}`)]).then(() => undefined),
    cleanup: () => rm(host, { recursive: true, force: true }),
  }
}

/** The snapshot benchmark. */
export const snapshotBenchmark: Benchmark = {
  name: 'snapshots',
  title: 'snapshot (10 MB in 1,000 files), fork of 8, tree-search loop',
  run: (ctx) => runSnapshotBenchmark(ctx, copyBaseline),
}

/** The snapshot figures on `ctx.stack`, the snapshot beside `baseline`. */
export async function runSnapshotBenchmark(ctx: BenchContext, makeBaseline: () => Promise<SnapshotBaseline>): Promise<BenchResult> {
  const { stack } = ctx
  const conn = stack.conn
  const rounds = ctx.iterations ?? 20
  const notes: string[] = []
  const track = (sb: Sandbox) => (stack.ids.add(sb.sandboxId), sb)
  const sb = track(await Sandbox.create('debian', { ...conn }))
  const baseline = await makeBaseline()
  const snapshotMs: number[] = []
  const copyMs: number[] = []
  let driver = ''
  try {
    // 1. Snapshot after changing 10 MB in 1,000 files, beside the same work done on the host.
    await baseline.setup()
    for (let i = 0; i < rounds; i++) {
      checkAborted(ctx.signal)
      await sb.commands.run(writeTenMegabytes, { ...conn })
      const start = nowMs()
      const snap = await sb.snapshot(conn)
      snapshotMs.push(nowMs() - start)
      driver = snap.driver
      await deleteSnapshot(snap.id, conn)
      await baseline.beforeRound?.(i)
      const copyStart = nowMs()
      await baseline.round(i)
      copyMs.push(nowMs() - copyStart)
      ctx.progress(`snapshot ${i + 1}/${rounds}`)
    }
    notes.push(`storage driver: ${driver}; the overlay goal is p95 ≤ 50 ms, btrfs p95 ≤ 15 ms (run on a data dir set up with \`sandstorm setup --btrfs-loop\` for btrfs figures)`)
    if (baseline.note) notes.push(baseline.note)

    // 2. Fork of 8 from one snapshot, cold and from a warm pool of 8; baseline: 8 creates from the template at once.
    const base = await sb.snapshot(conn)
    const forkMs: number[] = []
    const createMs: number[] = []
    const poolForkMs: number[] = []
    /** Pooled sandboxes each timed pooled fork took (8 when all came from the pool). */
    const pooledTaken: number[] = []
    const hitsOf = async (): Promise<number> => (await listPools(conn)).find((p) => p.template === 'debian')?.hits ?? 0
    const forkRounds = Math.max(3, Math.ceil(rounds / 4))
    /**
     * A pause before each timed burst, long enough for the agent to make its spare disks again
     * (they are made once creates pause): without it, the creates right after the fork found
     * none left, and each made its disk on the spot, where the fork had found them made.
     */
    const spareRefill = (): Promise<void> => new Promise((r) => setTimeout(r, spareRefillMs))
    for (let i = 0; i < forkRounds; i++) {
      checkAborted(ctx.signal)
      await spareRefill()
      let start = nowMs()
      const forks = (await Sandbox.fork(base.id, { ...conn, count: 8 })).map(track)
      forkMs.push(nowMs() - start)
      await Promise.all(forks.map((f) => f.kill(conn)))
      await spareRefill()
      start = nowMs()
      const fresh = (await Promise.all(Array.from({ length: 8 }, () => Sandbox.create('debian', { ...conn })))).map(track)
      createMs.push(nowMs() - start)
      await Promise.all(fresh.map((f) => f.kill(conn)))
      // From a pool of 8, filled before and deleted after, untimed, so that the rows above meet no pool.
      await setPool('debian', { ...conn, min: 8, max: 8 })
      try {
        await waitForPool('debian', { ...conn, ready: 8, waitMs: 120_000 })
        const hits = await hitsOf()
        start = nowMs()
        const pooled = (await Sandbox.fork(base.id, { ...conn, count: 8 })).map(track)
        poolForkMs.push(nowMs() - start)
        pooledTaken.push((await hitsOf()) - hits)
        await Promise.all(pooled.map((f) => f.kill(conn)))
      } finally {
        await deletePool('debian', conn)
      }
      ctx.progress(`fork ${i + 1}/${forkRounds}`)
    }
    notes.push(`cold fork of 8 and 8 creates at once: each after a ${spareRefillMs} ms pause, in which the agent makes again the spare disks the last burst took`)
    notes.push(`fork of 8 from a pool of 8: the pool was refilled to 8 ready before each round, untimed; pooled sandboxes each round took: ${pooledTaken.join(', ')} (a restore of each to the snapshot instead of a start)`)

    // 3. Tree search: restore a node, run a command, snapshot the child; 200 iterations.
    const steps = ctx.iterations ? Math.max(20, ctx.iterations * 10) : 200
    const nodes = [base.id]
    const restoreMs: number[] = []
    const runMs: number[] = []
    const childMs: number[] = []
    const loopStart = nowMs()
    for (let i = 0; i < steps; i++) {
      checkAborted(ctx.signal)
      const node = nodes[Math.floor(Math.random() * nodes.length)]!
      let start = nowMs()
      await sb.restore(node, conn)
      restoreMs.push(nowMs() - start)
      start = nowMs()
      await sb.commands.run(`echo ${i} >> /work/path`, { ...conn })
      runMs.push(nowMs() - start)
      start = nowMs()
      nodes.push((await sb.snapshot(conn)).id)
      childMs.push(nowMs() - start)
      if (i % 20 === 19) ctx.progress(`tree search ${i + 1}/${steps}`)
    }
    const perSecond = steps / ((nowMs() - loopStart) / 1000)
    notes.push(`tree search: ${steps} iterations at ${perSecond.toFixed(1)} iterations/s (goal ≥ 30/s); baseline of each step: the command alone`)
    // The restore's baseline: a new container from the same snapshot, which is what a restore was.
    const newContainerMs: number[] = []
    for (let i = 0; i < Math.min(steps, 50); i++) {
      checkAborted(ctx.signal)
      const start = nowMs()
      const [fresh] = await Sandbox.fork(nodes[i % nodes.length]!, { ...conn, count: 1 })
      newContainerMs.push(nowMs() - start)
      await fresh!.kill(conn)
    }
    const runOnly: number[] = []
    for (let i = 0; i < Math.min(steps, 50); i++) {
      const start = nowMs()
      await sb.commands.run(`echo ${i} >> /work/path`, { ...conn })
      runOnly.push(nowMs() - start)
    }
    // The child's baseline: one `cp -a` run of a one-file tree on the host, what a snapshot of a
    // small change cost at the least while each snapshot ran one.
    const smallTree = await mkdtemp(join(tmpdir(), 'sandstorm-bench-small-'))
    const cpSmall: number[] = []
    try {
      await execa('sh', ['-c', `mkdir ${join(smallTree, 'src')} && echo 1 > ${join(smallTree, 'src', 'path')}`])
      for (let i = 0; i < Math.min(steps, 50); i++) {
        const start = nowMs()
        await execa('cp', ['-a', join(smallTree, 'src'), join(smallTree, `copy-${i}`)])
        cpSmall.push(nowMs() - start)
      }
    } finally {
      await rm(smallTree, { recursive: true, force: true })
    }
    // 4. After a restore, the first write to files of the template's layer: each is copied up into
    // the fresh writable layer (on a volatile overlay without a flush of the quota disk), beside the
    // same writes again, which copy nothing.
    const writeTemplateFiles = ['python3', '-c', 'import glob\nfor p in sorted(glob.glob("/usr/share/doc/*/copyright"))[:100]:\n  open(p, "a").write("x")']
    const firstWrites: number[] = []
    const writesAgain: number[] = []
    for (let i = 0; i < Math.min(steps, 20); i++) {
      checkAborted(ctx.signal)
      await sb.restore(base.id, conn)
      let start = nowMs()
      await sb.commands.run(writeTemplateFiles, { ...conn })
      firstWrites.push(nowMs() - start)
      start = nowMs()
      await sb.commands.run(writeTemplateFiles, { ...conn })
      writesAgain.push(nowMs() - start)
    }
    await sb.kill(conn)
    // Leaves last: a snapshot that others stand on cannot go first.
    for (const id of nodes.reverse()) await deleteSnapshot(id, conn).catch(() => undefined)

    return {
      name: 'snapshots',
      title: snapshotBenchmark.title,
      notes,
      figures: [
        {
          what: `sandbox.snapshot() after 10 MB changed in 1,000 files (${driver})`,
          unit: 'ms',
          subject: summarize(snapshotMs),
          baseline: { what: baseline.what, summary: summarize(copyMs) },
          goal: { stat: 'p95', atMost: driver === 'btrfs' ? 15 : 50 },
        },
        {
          what: 'Sandbox.fork(snapshot, { count: 8 }) until all 8 run',
          unit: 'ms',
          subject: summarize(forkMs),
          baseline: { what: '8 × Sandbox.create(debian) at once', summary: summarize(createMs) },
          goal: { stat: 'p95', atMost: 200 },
        },
        {
          what: 'Sandbox.fork(snapshot, { count: 8 }) from a warm pool of 8 until all 8 run',
          unit: 'ms',
          subject: summarize(poolForkMs),
          baseline: { what: 'the same fork of 8 cold (no pool), same rounds', summary: summarize(forkMs) },
          goal: { stat: 'p95', atMost: 120 },
        },
        {
          what: 'tree search step: sandbox.restore(node), in place',
          unit: 'ms',
          subject: summarize(restoreMs),
          baseline: { what: 'Sandbox.fork(node, { count: 1 }): a new container from the snapshot, as a restore was', summary: summarize(newContainerMs) },
          goal: { stat: 'p95', atMost: 20 },
        },
        {
          what: 'tree search step: commands.run(echo)',
          unit: 'ms',
          subject: summarize(runMs),
          baseline: { what: 'commands.run(echo) with no restores or snapshots between', summary: summarize(runOnly) },
        },
        {
          what: 'tree search step: sandbox.snapshot() of the child (one file changed)',
          unit: 'ms',
          subject: summarize(childMs),
          baseline: { what: 'cp -a of a one-file tree on the host (one process run)', summary: summarize(cpSmall) },
          goal: { stat: 'p95', atMost: 10 },
        },
        {
          what: 'after a restore: the first write to 100 files of the template (copy-ups), one python3',
          unit: 'ms',
          subject: summarize(firstWrites),
          baseline: { what: 'the same writes again, right after (nothing to copy up)', summary: summarize(writesAgain) },
        },
      ],
    }
  } finally {
    await baseline.cleanup()
  }
}
