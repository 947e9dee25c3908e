/**
 * e2b: `Sandbox.create()` + `commands.run('true')` + `kill()` through the unmodified `e2b` SDK
 * against Sandstorm's E2B surface, beside the same cycle through Sandstorm's own SDK in the same
 * run (the baseline). Both talk to the same server over loopback.
 *
 * Registered in bench/index.ts as `e2bBenchmark`; also runs alone:
 *   node dist/bench/e2b.js [--iterations N] [--json]
 */
import { pathToFileURL } from 'node:url'
import { Sandbox as E2bSandbox } from 'e2b'
import { createApiKeyInDataDir } from '../src/server/index.js'
import { Sandbox } from '@sandstorm/sdk'
import { startBenchStack, stackSkipReason } from './bench-stack.js'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import { machineInfo } from './machine.js'
import { formatMachine, formatResult, toJson, type BenchResult } from './report.js'
import { nowMs, summarize } from './stats.js'

const defaultIterations = 20
const warmupRuns = 2

/** The e2b benchmark. */
export const e2bBenchmark: Benchmark = {
  name: 'e2b',
  title: "create + run('true') + kill through the e2b SDK, beside Sandstorm's SDK",
  async run(ctx: BenchContext): Promise<BenchResult> {
    const n = ctx.iterations ?? defaultIterations
    const { stack } = ctx
    const e2b = {
      apiUrl: stack.server.url,
      sandboxUrl: stack.server.url,
      apiKey: createApiKeyInDataDir(stack.dataDir, 'e2b'),
    }

    const viaE2b = async (): Promise<number> => {
      const start = nowMs()
      const sbx = await E2bSandbox.create('base', e2b)
      stack.ids.add(sbx.sandboxId)
      const r = await sbx.commands.run('true')
      await sbx.kill()
      const ms = nowMs() - start
      if (r.exitCode !== 0) throw new Error(`e2b commands.run('true') expected exit 0, got ${r.exitCode}`)
      return ms
    }
    const viaSandstorm = async (): Promise<number> => {
      const start = nowMs()
      const sbx = await Sandbox.create('debian', { ...stack.conn })
      stack.ids.add(sbx.sandboxId)
      const r = await sbx.commands.run('true')
      await sbx.kill()
      const ms = nowMs() - start
      if (r.exitCode !== 0) throw new Error(`sandstorm commands.run('true') expected exit 0, got ${r.exitCode}`)
      return ms
    }

    for (let i = 0; i < warmupRuns; i++) {
      await viaE2b()
      await viaSandstorm()
    }
    // Interleaved, so that drift on the host weighs on both alike.
    const e2bMs: number[] = []
    const ownMs: number[] = []
    for (let i = 0; i < n; i++) {
      checkAborted(ctx.signal)
      e2bMs.push(await viaE2b())
      ownMs.push(await viaSandstorm())
      if ((i + 1) % 5 === 0) ctx.progress(`e2b: ${i + 1}/${n}`)
    }
    return {
      name: 'e2b',
      title: e2bBenchmark.title,
      figures: [
        {
          what: "e2b: Sandbox.create() + commands.run('true') + kill()",
          unit: 'ms',
          subject: summarize(e2bMs),
          baseline: { what: "Sandstorm SDK: Sandbox.create('debian') + commands.run('true') + kill()", summary: summarize(ownMs) },
        },
      ],
      notes: [
        "e2b runs commands as `/bin/bash -l -c` (a login shell reads /etc/profile); Sandstorm's SDK runs `/bin/sh -c`.",
        'The e2b SDK sends each envd call over its own Connect request, as it does against E2B.',
      ],
    }
  },
}

async function standalone(argv: string[]): Promise<number> {
  const skip = stackSkipReason()
  if (skip) {
    process.stderr.write(`bench e2b: cannot run: ${skip}\n`)
    return 1
  }
  const at = argv.indexOf('--iterations')
  const iterations = at >= 0 ? Number(argv[at + 1]) : undefined
  if (iterations !== undefined && !(Number.isInteger(iterations) && iterations > 0)) {
    process.stderr.write(`bench e2b: --iterations expected a positive integer, got "${argv[at + 1]}"\n`)
    return 2
  }
  const json = argv.includes('--json')
  const machine = await machineInfo()
  const stack = await startBenchStack()
  const leftovers: string[] = []
  const interrupt = new AbortController()
  process.once('SIGINT', () => interrupt.abort())
  try {
    const result = await e2bBenchmark.run({
      stack,
      iterations,
      signal: interrupt.signal,
      progress: (line) => process.stderr.write(`bench: ${line}\n`),
      leftovers: (items) => leftovers.push(...items),
    })
    process.stdout.write(json ? `${JSON.stringify(toJson(machine, [result], []), null, 2)}\n` : `${formatMachine(machine)}\n\n${formatResult(result)}\n`)
  } finally {
    leftovers.push(...(await stack.close()))
  }
  if (leftovers.length > 0) process.stderr.write(`bench e2b: LEFT BEHIND:\n  ${leftovers.join('\n  ')}\n`)
  return leftovers.length > 0 ? 1 : 0
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) process.exitCode = await standalone(process.argv)
