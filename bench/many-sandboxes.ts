/**
 * many-sandboxes: 100 sandboxes running `true` in a loop, all at once, through the SDK: the
 * aggregate rate (execs/s) and each exec's latency, beside the same number of execs at the same
 * concurrency into one sandbox, and a sequential loop on one sandbox, measured in the same run.
 */
import { Sandbox } from '@sandstorm/sdk'
import { createIdleSandboxes, mapLimit, parallelCreates } from './concurrency.js'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import type { BenchResult, Figure } from './report.js'
import { summarize } from './stats.js'
import { runLoad } from './exec-load.js'

const sandboxCount = 100
const defaultExecsEach = 20
const rounds = 3
/** The goal: 400 execs/s over all of them, i.e. at most 2.5 ms of wall time per exec. */
const goalMsPerExec = 1000 / 400
const sequentialExecs = 200

/** One round: how long it took over all, each exec's latency, and the CPU each side spent. */
interface Round {
  wallMs: number
  execs: number
  latencies: number[]
  /** This process's CPU time over the round: the server and the agent, which run in it. */
  serverCpuMs: number
  clientCpuMs: number
}

/** `streams` loops of `each` execs at once from a client process of their own, loop i on `sandboxIds[i % length]`. */
async function round(ctx: BenchContext, sandboxIds: string[], streams: number, each: number): Promise<Round> {
  const cpu = process.cpuUsage()
  const r = await runLoad({ conn: ctx.stack.conn, sandboxIds, streams, each })
  const used = process.cpuUsage(cpu)
  return { ...r, serverCpuMs: (used.user + used.system) / 1000 }
}

const perExec = (rs: Round[]) => summarize(rs.map((r) => r.wallMs / r.execs))
const latencies = (rs: Round[]) => summarize(rs.flatMap((r) => r.latencies))
const sum = (rs: Round[], pick: (r: Round) => number) => rs.reduce((a, r) => a + pick(r), 0)
const rate = (rs: Round[]) => (1000 * sum(rs, (r) => r.execs)) / sum(rs, (r) => r.wallMs)
/** CPU ms per exec: the server's process, and the client's. */
const cpuPerExec = (rs: Round[]) => `server+agent ${(sum(rs, (r) => r.serverCpuMs) / sum(rs, (r) => r.execs)).toFixed(2)} ms, client ${(sum(rs, (r) => r.clientCpuMs) / sum(rs, (r) => r.execs)).toFixed(2)} ms`

/** The many-sandboxes benchmark. */
export const manySandboxesBenchmark: Benchmark = {
  name: 'many-sandboxes',
  title: `${sandboxCount} sandboxes running commands at once`,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const each = ctx.iterations ?? defaultExecsEach
    const conn = ctx.stack.conn
    const ids: string[] = []
    try {
      await createIdleSandboxes(ctx, sandboxCount, ids, 'many-sandboxes', 25)
      const one = [ids[0]!]
      // Warm-up, not counted: the first exec of each sandbox, and a few on the one.
      await round(ctx, ids, sandboxCount, 1)
      await round(ctx, one, 1, 5)
      const many: Round[] = []
      const oneAtOnce: Round[] = []
      const sequential: Round[] = []
      // Interleaved, so that drift weighs on all three alike.
      for (let r = 0; r < rounds; r++) {
        checkAborted(ctx.signal)
        many.push(await round(ctx, ids, sandboxCount, each))
        oneAtOnce.push(await round(ctx, one, sandboxCount, each))
        sequential.push(await round(ctx, one, 1, sequentialExecs))
        ctx.progress(`many-sandboxes: round ${r + 1}/${rounds}: ${rate([many.at(-1)!]).toFixed(0)} execs/s over ${sandboxCount} sandboxes`)
      }
      const oneBase = { what: `${sandboxCount} loops at once into ONE sandbox`, summary: perExec(oneAtOnce) }
      const figures: Figure[] = [
        {
          what: `wall ms per exec over all: ${sandboxCount} sandboxes x ${each} execs at once (1000 / execs/s)`,
          unit: 'ms',
          subject: perExec(many),
          baseline: oneBase,
          goal: { stat: 'mean', atMost: goalMsPerExec },
        },
        {
          what: 'the same wall ms per exec, beside one exec at a time',
          unit: 'ms',
          subject: perExec(many),
          baseline: { what: `one exec at a time on one sandbox (${sequentialExecs} a round)`, summary: perExec(sequential) },
        },
        {
          what: `latency of each exec, ${sandboxCount} sandboxes at once`,
          unit: 'ms',
          subject: latencies(many),
          baseline: { what: `latency of each exec, ${sandboxCount} loops at once into ONE sandbox`, summary: latencies(oneAtOnce) },
        },
        {
          what: 'latency of each exec, one at a time on one sandbox',
          unit: 'ms',
          subject: latencies(sequential),
          baseline: null,
        },
      ]
      return {
        name: 'many-sandboxes',
        title: `${this.title} (commands.run(['true']), ${rounds} rounds of ${sandboxCount} x ${each})`,
        figures,
        notes: [
          `aggregate: ${rate(many).toFixed(0)} execs/s over ${sandboxCount} sandboxes; ${rate(oneAtOnce).toFixed(0)} execs/s with the same ${sandboxCount} loops into one sandbox; ${rate(sequential).toFixed(0)} execs/s one at a time (goal: >= 400 execs/s, read as mean <= ${goalMsPerExec} ms of wall time per exec)`,
          `CPU per exec: ${sandboxCount} sandboxes: ${cpuPerExec(many)}; one sandbox, ${sandboxCount} loops: ${cpuPerExec(oneAtOnce)}; one at a time: ${cpuPerExec(sequential)} (the server and the agent share one process, so one core at most; its CPU is all it did over the round, the usage sampling of the 100 sandboxes included, which weighs most on the slow sequential rounds; the sandboxes' own fork and exec are in neither)`,
          `the execs come from a client process of their own (forked per round, its start untimed), as a user's would, so that the server's process is not also the load's`,
          `the wall-per-exec rows have one sample a round (n = ${rounds}); the latency rows one a exec; the sequential latency row is the floor an exec costs when nothing else runs`,
          `${sandboxCount} debian sandboxes created ${parallelCreates} at a time before the rounds (untimed), each with its network namespace`,
        ],
      }
    } finally {
      ctx.progress(`many-sandboxes: destroying ${ids.length} sandboxes`)
      const failed: string[] = []
      await mapLimit(ids, parallelCreates, (id) => Sandbox.kill(id, { ...conn }).catch((err: unknown) => failed.push(`${id}: ${err instanceof Error ? err.message : String(err)}`)))
      if (failed.length > 0) ctx.leftovers(failed.map((f) => `many-sandboxes: destroy failed: ${f}`))
    }
  },
}
