/**
 * snapshots-btrfs: the snapshot benchmark again, with the layer store on btrfs (a loop file made
 * for the run), where snapshots and forks are subvolume snapshots.
 */
import { startBenchStack } from './bench-stack.js'
import type { Benchmark } from './context.js'
import { snapshotBenchmark } from './snapshots.js'

/** The btrfs variant of the snapshot benchmark. */
export const snapshotBtrfsBenchmark: Benchmark = {
  name: 'snapshots-btrfs',
  title: 'snapshot, fork and tree search on the btrfs layer store',
  async run(ctx) {
    const stack = await startBenchStack({ btrfsMiB: 4096 })
    try {
      const result = await snapshotBenchmark.run({ ...ctx, stack })
      return { ...result, name: snapshotBtrfsBenchmark.name, title: snapshotBtrfsBenchmark.title }
    } finally {
      ctx.leftovers(await stack.close())
    }
  },
}
