/**
 * usage-sampling: what one tick of the usage recorder costs with many sandboxes alive (the server
 * samples every sandbox every 5 s): wall time and the process's CPU time (server and in-process
 * agent together) of a tick, one batched statsMany and one SQLite transaction. Baseline, in the
 * same run: asking each sandbox's usage now over HTTP (GET /v1/sandboxes/:id/usage), one by one,
 * as a client polling every sandbox would.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Sandbox, type SandboxInfo } from '@sandstorm/sdk'
import { silentLogger } from '../src/shared/index.js'
import type { SandboxRecord } from '../src/server/catalog.js'
import { openDatabase } from '../src/server/db.js'
import { createUsageHistory } from '../src/server/usage-history.js'
import { startUsageRecorder } from '../src/server/usage-recorder.js'
import { createIdleSandboxes, mapLimit } from './concurrency.js'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import type { BenchResult } from './report.js'
import { summarize } from './stats.js'

const defaultCount = 50
const ticks = 30

/** Wall and CPU milliseconds of `fn`, CPU being this process's user + system time. */
async function cost(fn: () => Promise<unknown>): Promise<{ wallMs: number; cpuMs: number }> {
  const cpu = process.cpuUsage()
  const start = performance.now()
  await fn()
  const used = process.cpuUsage(cpu)
  return { wallMs: performance.now() - start, cpuMs: (used.user + used.system) / 1000 }
}

const recordOf = (s: SandboxInfo): SandboxRecord => ({
  ...s,
  env: {},
  createdAtMs: Date.parse(s.createdAt),
  expiresAtMs: Date.parse(s.expiresAt),
})

/** The benchmark. */
export const usageSamplingBenchmark: Benchmark = {
  name: 'usage-sampling',
  title: 'usage recorder: the cost of one tick over every sandbox',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const count = ctx.iterations ?? defaultCount
    const ids: string[] = []
    // The history goes to a database of its own, so that the server's recorder is not disturbed.
    const dir = await mkdtemp(join(tmpdir(), 'sandstorm-bench-usage-'))
    const db = openDatabase(dir)
    const stop = new AbortController()
    try {
      await createIdleSandboxes(ctx, count, ids, 'usage-sampling', 10)
      const records = (await Sandbox.list({ ...ctx.stack.conn })).filter((s) => ids.includes(s.id)).map(recordOf)
      const history = createUsageHistory(db)
      // The timer is an hour away: ticks are run here, one at a time.
      const recorder = startUsageRecorder({ agent: ctx.stack.agent, catalog: { list: () => records }, history, intervalMs: 3_600_000, logger: silentLogger(), signal: stop.signal })
      await recorder.tick()
      const tick: { wallMs: number; cpuMs: number }[] = []
      for (let i = 0; i < ticks; i++) {
        checkAborted(ctx.signal)
        tick.push(await cost(() => recorder.tick()))
      }
      const polled: { wallMs: number; cpuMs: number }[] = []
      const headers = { authorization: `Bearer ${ctx.stack.conn.apiKey}` }
      for (let i = 0; i < Math.min(ticks, 10); i++) {
        checkAborted(ctx.signal)
        polled.push(await cost(() => mapLimit(ids, 1, async (id) => (await fetch(`${ctx.stack.conn.apiUrl}/v1/sandboxes/${id}/usage`, { headers })).json())))
      }
      const baseline = (pick: (c: { wallMs: number; cpuMs: number }) => number) => ({ what: `GET /v1/sandboxes/:id/usage for each of ${count}, one by one`, summary: summarize(polled.map(pick)) })
      return {
        name: 'usage-sampling',
        title: `${this.title} (${count} sandboxes, ${ticks} ticks)`,
        figures: [
          { what: `one tick: statsMany of ${count} + one SQLite transaction, wall`, unit: 'ms', subject: summarize(tick.map((c) => c.wallMs)), baseline: baseline((c) => c.wallMs) },
          { what: 'one tick, CPU time of the server and agent process', unit: 'ms', subject: summarize(tick.map((c) => c.cpuMs)), baseline: baseline((c) => c.cpuMs) },
        ],
        notes: [
          `samples kept per tick: ${history.count(ids[0]!)} for the first sandbox after ${ticks + 1} ticks (the first tick only reads CPU counters)`,
          'CPU time is the whole process (server and in-process agent) while the tick ran, so it includes anything else the process did then (the server\'s own recorder ticks every 5 s)',
        ],
      }
    } finally {
      stop.abort()
      db.close()
      await rm(dir, { recursive: true, force: true })
      ctx.progress(`usage-sampling: destroying ${ids.length} sandboxes`)
      await mapLimit(ids, 1, (id) => Sandbox.kill(id, { ...ctx.stack.conn }).catch(() => false))
    }
  },
}
