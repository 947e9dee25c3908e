/**
 * pool: `Sandbox.create('debian')` end to end through the SDK when a warm pool has one ready,
 * beside the cold create (no pool) measured in the same run.
 */
import { deletePool, Sandbox, setPool, waitForPool } from '@sandstorm/sdk'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import type { BenchResult } from './report.js'
import { summarize, timed } from './stats.js'

const defaultIterations = 60
const poolMin = 4

/** The warm pool benchmark. */
export const poolBenchmark: Benchmark = {
  name: 'pool',
  title: 'create from a warm pool, beside a cold create',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const { stack } = ctx
    const conn = stack.conn
    const rounds = ctx.iterations ?? defaultIterations
    const create = async (): Promise<number> => {
      const { ms, value: sb } = await timed(() => Sandbox.create('debian', { ...conn }))
      stack.ids.add(sb.sandboxId)
      await sb.kill(conn)
      return ms
    }

    // Cold first, while no pool exists; one untimed run warms the page cache and the JIT.
    await create()
    const coldMs: number[] = []
    for (let i = 0; i < rounds; i++) {
      checkAborted(ctx.signal)
      coldMs.push(await create())
      if (i % 20 === 19) ctx.progress(`cold create ${i + 1}/${rounds}`)
    }

    const warmMs: number[] = []
    await setPool('debian', { ...conn, min: poolMin, max: poolMin * 2 })
    try {
      await create()
      for (let i = 0; i < rounds; i++) {
        checkAborted(ctx.signal)
        // Untimed: each sample measures a hit, not how fast the pool refills.
        await waitForPool('debian', { ...conn, ready: poolMin })
        warmMs.push(await create())
        if (i % 20 === 19) ctx.progress(`pooled create ${i + 1}/${rounds}`)
      }
    } finally {
      await deletePool('debian', conn)
    }
    return {
      name: 'pool',
      title: this.title,
      notes: [`pool of debian, min ${poolMin}: every timed create found one ready (refills are waited for between samples, untimed); kills are untimed`],
      figures: [
        {
          what: "Sandbox.create('debian') from a warm pool until it resolves",
          unit: 'ms',
          subject: summarize(warmMs),
          baseline: { what: "Sandbox.create('debian') cold (no pool)", summary: summarize(coldMs) },
          goal: { stat: 'p95', atMost: 10 },
        },
      ],
    }
  },
}
