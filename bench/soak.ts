/**
 * soak: execs at concurrency 50 across a server and three agents (separate processes, each agent in
 * a network namespace of its own), once undisturbed (the baseline) and once while one agent and
 * then the server are SIGKILLed and restarted, on the same fleet and sandboxes. Prints the latency
 * of the execs that succeeded, the throughput, and how many failed (all typed and retryable; a
 * wrong answer or another error fails the benchmark). test/soak.test.ts asserts the same, shorter.
 */
import { Sandbox } from '@sandstorm/sdk'
import { faultPlan, runExecs, startSoakFleet, type SoakOutcome } from '../test/helpers/soak.js'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import type { BenchResult } from './report.js'
import { summarize } from './stats.js'

const defaultExecs = 20_000
const concurrency = 50
const agents = 3

function describeOutcome(what: string, o: SoakOutcome, total: number): string {
  const failed = Object.entries(o.retryable).map(([k, v]) => `${v} ${k}`).join(', ') || 'none'
  return `${what}: ${total} execs in ${o.seconds.toFixed(1)} s, ${(total / o.seconds).toFixed(0)} execs/s; ${o.ok} ok; failed retryable: ${failed}`
}

/** The soak benchmark. */
export const soakBenchmark: Benchmark = {
  name: 'soak',
  title: `execs at concurrency ${concurrency} over 3 agents, undisturbed vs through an agent's and the server's SIGKILL`,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const total = ctx.iterations ?? defaultExecs
    const fleet = await startSoakFleet(agents, 5_000)
    const notes: string[] = []
    try {
      const sandboxes: Sandbox[] = []
      for (let i = 0; i < agents * 2; i++) sandboxes.push(await Sandbox.create('debian', { ...fleet.conn(), timeoutMs: 4 * 60 * 60_000 }))
      checkAborted(ctx.signal)
      ctx.progress(`soak: ${total} execs undisturbed`)
      const calm = await runExecs(sandboxes, total, concurrency)
      checkAborted(ctx.signal)
      ctx.progress(`soak: ${total} execs through the faults`)
      const faults = faultPlan(fleet, total, agents)
      const stormy = await runExecs(sandboxes, total, concurrency, faults.onDone)
      await faults.finished
      for (const o of [calm, stormy]) if (o.wrong.length > 0) throw new Error(`${o.wrong.length} execs went wrong: ${o.wrong.slice(0, 3).join('; ')}`)
      notes.push(describeOutcome('undisturbed', calm, total), describeOutcome('with faults', stormy, total))
      notes.push('faults: at 20 % of the execs agent 0 is SIGKILLed and restarted (it adopts its sandboxes), then at 50 % the server (the agents dial back); a worker whose exec failed waits 200 ms, as a retrying client would')
      notes.push(`production heartbeat (5 s); the server marks a silent agent lost after 10 s`)
      return {
        name: 'soak',
        title: this.title,
        figures: [
          {
            what: 'one exec that succeeded, with faults',
            unit: 'ms',
            subject: summarize(stormy.latencies),
            baseline: { what: 'one exec, undisturbed, same fleet', summary: summarize(calm.latencies) },
          },
        ],
        notes,
      }
    } finally {
      for (const s of await Sandbox.list(fleet.conn()).catch(() => [])) await Sandbox.kill(s.id, fleet.conn()).catch(() => undefined)
      await fleet.stop()
    }
  },
}
