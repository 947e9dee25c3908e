/**
 * snapshots-btrfs: the snapshot benchmark again, with the layer store on btrfs (a loop file made
 * for the run), where snapshots and forks are subvolume snapshots. Its baseline is the floor of
 * that: `btrfs subvolume snapshot -r` run on the host, on the same filesystem, of a subvolume
 * where 10 MB in 1,000 files were just written.
 */
import { randomBytes } from 'node:crypto'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { startBenchStack } from './bench-stack.js'
import type { Benchmark } from './context.js'
import { runSnapshotBenchmark, type SnapshotBaseline } from './snapshots.js'

/**
 * The loop file is mounted as `sandstorm setup --btrfs-loop` mounts it, barriers on: every
 * transaction commit (each subvolume snapshot makes one) ends with a cache flush that the loop
 * device turns into an fsync of the loop file, 20 to 50 ms here whatever the snapshot's size.
 * `SANDSTORM_BENCH_BTRFS_OPTIONS=nobarrier` measures without it (unsafe on a host crash).
 */
const mountOptions = (process.env.SANDSTORM_BENCH_BTRFS_OPTIONS ?? '').split(',').filter(Boolean)

/** The btrfs variant of the snapshot benchmark. */
export const snapshotBtrfsBenchmark: Benchmark = {
  name: 'snapshots-btrfs',
  title: 'snapshot, fork and tree search on the btrfs layer store',
  async run(ctx) {
    const stack = await startBenchStack({ btrfsMiB: 4096, btrfsMountOptions: mountOptions })
    try {
      const store = join(stack.dataDir, 'storage')
      const result = await runSnapshotBenchmark({ ...ctx, stack }, async () => subvolumeBaseline(join(store, 'bench-baseline')))
      return { ...result, name: snapshotBtrfsBenchmark.name, title: snapshotBtrfsBenchmark.title }
    } finally {
      ctx.leftovers(await stack.close())
    }
  },
}

/** `btrfs subvolume snapshot -r` on the host after writing the tree afresh, beside the layer store. */
function subvolumeBaseline(dir: string): SnapshotBaseline {
  const source = join(dir, 'source')
  const taken: string[] = []
  return {
    what: 'btrfs subvolume snapshot -r on the host after writing the same tree',
    note: mountOptions.length > 0 ? `btrfs loop file mounted ${mountOptions.join(',')}` : 'btrfs loop file mounted with barriers, as setup does: each subvolume snapshot waits for an fsync of the loop file (the commit\'s cache flush)',
    async setup() {
      await execa('mkdir', ['-p', dir])
      await execa('btrfs', ['subvolume', 'create', source])
    },
    async beforeRound() {
      // Written afresh each round, as the sandbox's tree is, so that the snapshot flushes as much.
      for (let i = 0; i < 1000; i++) await writeFile(join(source, `f${i}`), randomBytes(10240))
    },
    async round(i) {
      const snap = join(dir, `snap-${i}`)
      taken.push(snap)
      await execa('btrfs', ['subvolume', 'snapshot', '-r', source, snap])
    },
    async cleanup() {
      for (const snap of [...taken, source]) await execa('btrfs', ['subvolume', 'delete', snap], { reject: false })
      await rm(dir, { recursive: true, force: true })
    },
  }
}
