/**
 * many-sandboxes: 100 sandboxes running `true` in a loop, all at once, through the SDK: the
 * aggregate rate (execs/s) and each exec's latency, beside the same number of execs at the same
 * concurrency into one sandbox, and a sequential loop on one sandbox, measured in the same run.
 */
import { Sandbox } from '@sandstorm/sdk'
import { createIdleSandboxes, mapLimit, parallelCreates } from './concurrency.js'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import type { BenchResult, Figure } from './report.js'
import { nowMs, summarize } from './stats.js'

const sandboxCount = 100
const defaultExecsEach = 20
const rounds = 3
/** The goal: 400 execs/s over all of them, i.e. at most 2.5 ms of wall time per exec. */
const goalMsPerExec = 1000 / 400
const sequentialExecs = 200

/** One round: how long it took over all, and each exec's latency. */
interface Round {
  wallMs: number
  execs: number
  latencies: number[]
}

/** Runs `true` as an argv; throws unless it exited 0 (a fast failure is not a fast exec). */
async function execTrue(sandbox: Sandbox, latencies: number[]): Promise<void> {
  const start = nowMs()
  const r = await sandbox.commands.run(['true'])
  latencies.push(nowMs() - start)
  if (r.exitCode !== 0) throw new Error(`true in ${sandbox.sandboxId} expected exit 0, got ${r.exitCode}`)
}

/** `streams` loops of `each` execs at once, loop i on `sandboxes[i % length]`. */
async function round(sandboxes: Sandbox[], streams: number, each: number): Promise<Round> {
  const latencies: number[] = []
  const start = nowMs()
  await Promise.all(
    Array.from({ length: streams }, async (_, i) => {
      for (let k = 0; k < each; k++) await execTrue(sandboxes[i % sandboxes.length]!, latencies)
    }),
  )
  return { wallMs: nowMs() - start, execs: streams * each, latencies }
}

const perExec = (rs: Round[]) => summarize(rs.map((r) => r.wallMs / r.execs))
const latencies = (rs: Round[]) => summarize(rs.flatMap((r) => r.latencies))
const rate = (rs: Round[]) => (1000 * rs.reduce((a, r) => a + r.execs, 0)) / rs.reduce((a, r) => a + r.wallMs, 0)

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
      const all = ids.map((id) => Sandbox.fromId(id, conn))
      const one = [all[0]!]
      // Warm-up, not counted: the first exec of each sandbox, and a few on the one.
      await round(all, sandboxCount, 1)
      await round(one, 1, 5)
      const many: Round[] = []
      const oneAtOnce: Round[] = []
      const sequential: Round[] = []
      // Interleaved, so that drift weighs on all three alike.
      for (let r = 0; r < rounds; r++) {
        checkAborted(ctx.signal)
        many.push(await round(all, sandboxCount, each))
        oneAtOnce.push(await round(one, sandboxCount, each))
        sequential.push(await round(one, 1, sequentialExecs))
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
