/**
 * code-interpreter: `Sandbox.create()` + `runCode('1+1')` + `kill()` through the unmodified
 * `@e2b/code-interpreter` SDK (the `code-interpreter-v1` template, whose kernel server starts with
 * the sandbox), cold and from a warm pool, beside `e2b`'s `Sandbox.create('base')` +
 * `commands.run('true')` + `kill()` measured in the same run, interleaved.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Sandbox as CodeSandbox } from '@e2b/code-interpreter'
import { Sandbox as E2bSandbox } from 'e2b'
import { createApiKeyInDataDir } from '../src/server/index.js'
import { deletePool, setPool, waitForPool } from '@sandstorm/sdk'
import { templatesDir } from './bench-stack.js'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import type { BenchResult } from './report.js'
import { nowMs, summarize } from './stats.js'

const template = 'code-interpreter-v1'
const defaultColdRounds = 10
const defaultWarmRounds = 40
const poolMin = 2

/** One cycle's times: the whole of it, and the runCode (or commands.run) and the kill inside it. */
interface Cycle {
  totalMs: number
  runMs: number
  killMs: number
}

/** The code interpreter benchmark. */
export const codeInterpreterBenchmark: Benchmark = {
  name: 'code-interpreter',
  title: "create + runCode('1+1') + kill through @e2b/code-interpreter, cold and from a warm pool, beside e2b's create + commands.run('true') + kill",
  async run(ctx: BenchContext): Promise<BenchResult> {
    if (!existsSync(join(templatesDir, template, 'current', 'template.json'))) throw new Error(`no ${template} template in ${templatesDir}: run scripts/setup.sh`)
    const { stack } = ctx
    const e2b = { apiUrl: stack.server.url, sandboxUrl: stack.server.url, apiKey: createApiKeyInDataDir(stack.dataDir, 'e2b') }

    const codeCycle = async (): Promise<Cycle> => {
      const start = nowMs()
      const sbx = await CodeSandbox.create(e2b)
      stack.ids.add(sbx.sandboxId)
      const runStart = nowMs()
      const ex = await sbx.runCode('1+1')
      const runMs = nowMs() - runStart
      const killStart = nowMs()
      await sbx.kill()
      const end = nowMs()
      const killMs = end - killStart
      const totalMs = end - start
      if (ex.text !== '2') throw new Error(`runCode('1+1') expected the result 2, got ${JSON.stringify(ex.text)} (error ${JSON.stringify(ex.error)})`)
      return { totalMs, runMs, killMs }
    }
    const e2bCycle = async (): Promise<Cycle> => {
      const start = nowMs()
      const sbx = await E2bSandbox.create('base', e2b)
      stack.ids.add(sbx.sandboxId)
      const runStart = nowMs()
      const r = await sbx.commands.run('true')
      const runMs = nowMs() - runStart
      const killStart = nowMs()
      await sbx.kill()
      const end = nowMs()
      const killMs = end - killStart
      const totalMs = end - start
      if (r.exitCode !== 0) throw new Error(`commands.run('true') expected exit 0, got ${r.exitCode}`)
      return { totalMs, runMs, killMs }
    }

    // Warm-up, untimed: the page cache, the JIT, the first kernel's imports.
    await codeCycle()
    await e2bCycle()

    const cold: Cycle[] = []
    const coldBase: Cycle[] = []
    const coldRounds = ctx.iterations ?? defaultColdRounds
    for (let i = 0; i < coldRounds; i++) {
      checkAborted(ctx.signal)
      cold.push(await codeCycle())
      coldBase.push(await e2bCycle())
      if (i % 5 === 4) ctx.progress(`code-interpreter: cold ${i + 1}/${coldRounds}`)
    }

    const warm: Cycle[] = []
    const warmBase: Cycle[] = []
    const warmRounds = ctx.iterations ?? defaultWarmRounds
    await setPool(template, { ...stack.conn, min: poolMin, max: poolMin * 2 })
    try {
      for (let i = 0; i < warmRounds; i++) {
        checkAborted(ctx.signal)
        // Untimed: each sample measures a hit, not how fast the pool starts kernels; and no refill
        // runs beside the baseline either.
        const full = () => waitForPool(template, { ...stack.conn, ready: poolMin, waitMs: 120_000 })
        await full()
        warm.push(await codeCycle())
        await full()
        warmBase.push(await e2bCycle())
        if (i % 10 === 9) ctx.progress(`code-interpreter: pooled ${i + 1}/${warmRounds}`)
      }
    } finally {
      await deletePool(template, stack.conn)
    }

    const base = (what: string, samples: Cycle[], pick: (c: Cycle) => number) => ({ what, summary: summarize(samples.map(pick)) })
    return {
      name: 'code-interpreter',
      title: codeInterpreterBenchmark.title,
      figures: [
        {
          what: "@e2b/code-interpreter: Sandbox.create() from a warm pool + runCode('1+1') + kill()",
          unit: 'ms',
          subject: summarize(warm.map((c) => c.totalMs)),
          baseline: base("e2b: Sandbox.create('base') + commands.run('true') + kill(), same rounds", warmBase, (c) => c.totalMs),
          goal: { stat: 'p50', atMost: 150 },
        },
        {
          what: "@e2b/code-interpreter: Sandbox.create() cold (no pool) + runCode('1+1') + kill()",
          unit: 'ms',
          subject: summarize(cold.map((c) => c.totalMs)),
          baseline: base("e2b: Sandbox.create('base') + commands.run('true') + kill(), same rounds", coldBase, (c) => c.totalMs),
        },
        {
          what: "runCode('1+1') alone, the first run in a pooled sandbox",
          unit: 'ms',
          subject: summarize(warm.map((c) => c.runMs)),
          baseline: base("commands.run('true') alone, the first command in a new base sandbox", warmBase, (c) => c.runMs),
        },
        {
          what: 'kill() alone of a pooled code-interpreter sandbox (its kernel server running)',
          unit: 'ms',
          subject: summarize(warm.map((c) => c.killMs)),
          baseline: base('kill() alone of a base sandbox that ran one command, same rounds', warmBase, (c) => c.killMs),
        },
      ],
      notes: [
        `pool of ${template}, min ${poolMin}: every pooled sample found one ready (refills, each starting a python kernel, are waited for between samples, untimed); the e2b baseline creates base sandboxes cold`,
        'a cold create waits for the kernel server in the sandbox to answer /health, which it does once the default python kernel is ready',
        'runCode goes from the SDK to the server and through ingress (E2B routing headers) into the sandbox, as against E2B',
      ],
    }
  },
}
