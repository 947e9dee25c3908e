/**
 * quota: what a disk quota costs. Create, snapshot and fork (a create from a snapshot) through the
 * agent, with a 2 GiB quota and with none, taken in turn in the same run so that load from
 * elsewhere weighs on both alike. The quota's mechanism is the layer store's: an ext4 image on
 * overlayfs (mkfs, loop mount), a qgroup limit on btrfs.
 */
import { newId } from '../src/shared/index.js'
import { startBenchStack } from './bench-stack.js'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import type { BenchResult, Figure } from './report.js'
import { summarize, timed } from './stats.js'

const defaultIterations = 30
const quotaMiB = 2048

interface Samples {
  create: number[]
  snapshot: number[]
  fork: number[]
}

/** The quota benchmark on the default layer store (overlayfs: ext4 images). */
export const quotaBenchmark: Benchmark = {
  name: 'quota',
  title: 'create, snapshot and fork with a disk quota vs without (overlayfs store)',
  run: (ctx) => runQuotaBenchmark(ctx, 'quota', quotaBenchmark.title),
}

/** The same on the btrfs layer store (qgroup limits), on a loop file made for the run. */
export const quotaBtrfsBenchmark: Benchmark = {
  name: 'quota-btrfs',
  title: 'create, snapshot and fork with a disk quota vs without (btrfs store)',
  async run(ctx) {
    const stack = await startBenchStack({ btrfsMiB: 4096 })
    try {
      const result = await runQuotaBenchmark({ ...ctx, stack }, 'quota-btrfs', quotaBtrfsBenchmark.title)
      result.notes.push('btrfs: once a qgroup limit is set, quotas are on for the whole filesystem, so the samples without a limit pay qgroup accounting too')
      return result
    } finally {
      ctx.leftovers(await stack.close())
    }
  },
}

async function runQuotaBenchmark(ctx: BenchContext, name: string, title: string): Promise<BenchResult> {
  const n = ctx.iterations ?? defaultIterations
  const agent = ctx.stack.agent
  const snapshots = agent.snapshots
  const notes: string[] = []
  const on: Samples = { create: [], snapshot: [], fork: [] }
  const off: Samples = { create: [], snapshot: [], fork: [] }
  const made: string[] = []
  const create = async (diskMiB: number, snapshotId?: string): Promise<{ id: string; ms: number }> => {
    const id = newId('sb')
    ctx.stack.ids.add(id)
    made.push(id)
    const { ms } = await timed(() => agent.create({ id, template: 'debian', memoryMiB: 256, cpus: 1, pidsMax: 256, diskMiB, env: {}, network: { mode: 'none' }, ...(snapshotId ? { snapshotId } : {}) }))
    return { id, ms }
  }
  const destroy = async (id: string): Promise<void> => {
    await agent.destroy(id)
    ctx.stack.ids.delete(id)
  }
  const round = async (diskMiB: number, into: Samples): Promise<void> => {
    const source = await create(diskMiB)
    into.create.push(source.ms)
    if (snapshots) {
      // 1 MB written first, so that the snapshot copies something.
      await writeSome(ctx, source.id)
      const snap = await timed(() => snapshots.take(source.id, {}))
      into.snapshot.push(snap.ms)
      const fork = await create(diskMiB, snap.value.id)
      into.fork.push(fork.ms)
      await destroy(fork.id)
      await destroy(source.id)
      await snapshots.remove(snap.value.id)
    } else await destroy(source.id)
  }
  try {
    // One untimed round each first: the page cache, the first mkfs.
    await round(quotaMiB, { create: [], snapshot: [], fork: [] })
    await round(0, { create: [], snapshot: [], fork: [] })
    for (let i = 0; i < n; i++) {
      checkAborted(ctx.signal)
      await round(quotaMiB, on)
      await round(0, off)
      if ((i + 1) % 10 === 0) ctx.progress(`quota ${i + 1}/${n}`)
    }
  } finally {
    for (const id of made) if (ctx.stack.ids.has(id)) await destroy(id).catch(() => undefined)
  }
  if (!snapshots) notes.push('this agent has no snapshots: create only')
  notes.push(`quota ${quotaMiB} MiB vs none, at the agent (no HTTP), rounds taken in turn; fork = a create from the snapshot`)
  const figure = (what: string, a: number[], b: number[]): Figure => ({
    what: `${what} with a ${quotaMiB} MiB quota`,
    unit: 'ms',
    subject: summarize(a),
    baseline: { what: `${what} without a quota`, summary: summarize(b) },
  })
  const figures = [figure('agent.create (debian)', on.create, off.create)]
  if (snapshots) figures.push(figure('snapshots.take after 1 MB written', on.snapshot, off.snapshot), figure('agent.create from the snapshot (fork)', on.fork, off.fork))
  for (const f of figures) notes.push(`${f.what.split(' with')[0]}: p50 +${(f.subject.p50 - f.baseline!.summary.p50).toFixed(1)} ms with the quota`)
  return { name, title, figures, notes }
}

/** Writes 1 MB into the sandbox's root. */
async function writeSome(ctx: BenchContext, id: string): Promise<void> {
  const { pid } = await ctx.stack.agent.exec(id, { argv: ['/bin/sh', '-c', 'head -c 1000000 /dev/zero > /root/blob'], env: {} })
  const r = await ctx.stack.agent.wait(id, pid)
  if (r.exitCode !== 0) throw new Error(`writing 1 MB exited ${r.exitCode}`)
}
