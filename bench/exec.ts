/**
 * exec: the round trip of `true` through SDK → server → agent → the sandbox's init on one warm
 * sandbox, beside bare `runc exec` into a minimal container, with rows that peel the layers off.
 */
import { Sandbox } from '@sandstorm/sdk'
import { createBareRunc, timeChild } from './bare-runc.js'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import type { BenchResult, Figure } from './report.js'
import { nowMs, summarize } from './stats.js'

const defaultIterations = 100
const warmupRuns = 5
const bareId = 'bench-exec'
/** Where every sandbox has Sandstorm's own static busybox. */
const sandboxBusybox = '/.sandstorm/busybox'

interface Variant {
  what: string
  goalP50Ms?: number
  sample(): Promise<number>
}

/** Fails loudly when a sample did not run `true` to a zero exit: a fast failure is not a fast exec. */
function expectZero(what: string, exitCode: number | null, stderr = ''): void {
  if (exitCode !== 0) throw new Error(`${what} expected exit 0, got ${exitCode}${stderr ? `: ${stderr.trim()}` : ''}`)
}

/** The exec benchmark. */
export const execBenchmark: Benchmark = {
  name: 'exec',
  title: 'round trip of `true` on one warm sandbox',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const n = ctx.iterations ?? defaultIterations
    const { stack } = ctx
    const bare = await createBareRunc()
    let sandbox: Sandbox | undefined
    try {
      await bare.run(bareId)
      sandbox = await Sandbox.create('debian', { ...stack.conn })
      stack.ids.add(sandbox.sandboxId)
      const id = sandbox.sandboxId
      const sb = sandbox
      const runc = (runcRoot: string, container: string, argv: string[]) => async () => {
        const t = await timeChild('runc', ['--root', runcRoot, 'exec', container, ...argv])
        expectZero(`runc exec ${argv.join(' ')}`, t.exitCode, t.stderr)
        return t.ms
      }
      const variants: Variant[] = [
        {
          what: "commands.run(['true']) (argv)",
          goalP50Ms: 20,
          async sample() {
            const start = nowMs()
            const r = await sb.commands.run(['true'])
            const ms = nowMs() - start
            expectZero('commands.run argv', r.exitCode)
            return ms
          },
        },
        {
          what: "commands.run('true') (shell string: /bin/sh -c)",
          async sample() {
            const start = nowMs()
            const r = await sb.commands.run('true')
            const ms = nowMs() - start
            expectZero('commands.run shell', r.exitCode)
            return ms
          },
        },
        {
          what: "layer: agent.exec + wait, in-process (no HTTP, no SDK)",
          async sample() {
            const start = nowMs()
            const { pid } = await stack.agent.exec(id, { argv: ['true'], env: {} })
            const r = await stack.agent.wait(id, pid)
            const ms = nowMs() - start
            expectZero('agent.exec', r.exitCode)
            return ms
          },
        },
        {
          what: 'layer: runc exec <sandbox> busybox true (no agent, no wrapper)',
          sample: runc(stack.runcRoot, id, [sandboxBusybox, 'true']),
        },
      ]
      const baseline = runc(bare.runcRoot, bareId, ['/bin/busybox', 'true'])

      for (let i = 0; i < warmupRuns; i++) {
        for (const v of variants) await v.sample()
        await baseline()
      }
      const samples = variants.map(() => [] as number[])
      const base: number[] = []
      // Interleaved: one sample of each in turn, so that drift weighs on all of them alike.
      for (let i = 0; i < n; i++) {
        checkAborted(ctx.signal)
        for (const [k, v] of variants.entries()) samples[k]!.push(await v.sample())
        base.push(await baseline())
        if ((i + 1) % 25 === 0) ctx.progress(`exec: ${i + 1}/${n}`)
      }

      const baseSummary = { what: 'runc exec <bare container> /bin/busybox true', summary: summarize(base) }
      const figures: Figure[] = variants.map((v, k) => ({
        what: v.what,
        unit: 'ms',
        subject: summarize(samples[k]!),
        baseline: baseSummary,
        ...(v.goalP50Ms !== undefined ? { goal: { stat: 'p50' as const, atMost: v.goalP50Ms } } : {}),
      }))
      return {
        name: 'exec',
        title: this.title,
        figures,
        notes: [
          `${warmupRuns} warm-up runs of each not counted; every child is timed from spawn until it exited and its pipes closed`,
          "the 'layer' rows peel Sandstorm's path apart: SDK+HTTP = row 1 - agent row; the agent row is a fork by the sandbox's own init over its socket; the runc exec row is what the sandbox's own config (seccomp, caps, cgroup namespace) costs runc: that row - baseline",
        ],
      }
    } finally {
      await sandbox?.kill().catch(() => undefined)
      ctx.leftovers(await bare.close())
    }
  },
}
