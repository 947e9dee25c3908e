/**
 * `npm run bench`: runs the benchmarks against a real server and agent and prints percentiles
 * beside baselines measured in the same run. Benchmarks print; they never assert.
 *
 *   node dist/bench/index.js [--only create,exec] [--iterations N] [--json]
 */
import { Command, InvalidArgumentError } from 'commander'
import { startBenchStack, stackSkipReason } from './bench-stack.js'
import type { BenchContext, Benchmark } from './context.js'
import { cliBenchmark } from './cli.js'
import { codeInterpreterBenchmark } from './code-interpreter.js'
import { createBenchmark } from './create.js'
import { e2bBenchmark } from './e2b.js'
import { execBenchmark } from './exec.js'
import { fleetBenchmark } from './fleet.js'
import { idleMemoryBenchmark } from './idle-memory.js'
import { imagesBenchmark } from './images.js'
import { machineInfo } from './machine.js'
import { manySandboxesBenchmark } from './many-sandboxes.js'
import { snapshotBenchmark } from './snapshots.js'
import { snapshotBtrfsBenchmark } from './snapshots-btrfs.js'
import { poolBenchmark } from './pool.js'
import { qemuBenchmark } from './qemu.js'
import { quotaBenchmark, quotaBtrfsBenchmark } from './quota.js'
import { soakBenchmark } from './soak.js'
import { networkBenchmark } from './network.js'
import { usageSamplingBenchmark } from './usage-sampling.js'
import { formatMachine, formatResult, toJson, type BenchResult } from './report.js'

const benchmarks: Benchmark[] = [createBenchmark, poolBenchmark, execBenchmark, manySandboxesBenchmark, idleMemoryBenchmark, snapshotBenchmark, snapshotBtrfsBenchmark, quotaBenchmark, quotaBtrfsBenchmark, e2bBenchmark, codeInterpreterBenchmark, fleetBenchmark, soakBenchmark, networkBenchmark, usageSamplingBenchmark, qemuBenchmark, imagesBenchmark, cliBenchmark]

interface CliOptions {
  only?: string[]
  iterations?: number
  json?: boolean
}

function positiveInt(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got "${value}"`)
  return n
}

function names(value: string, previous: string[] = []): string[] {
  const known = benchmarks.map((b) => b.name)
  const given = value.split(',').map((s) => s.trim()).filter(Boolean)
  for (const name of given) if (!known.includes(name)) throw new InvalidArgumentError(`expected one of ${known.join(', ')}, got "${name}"`)
  return [...previous, ...given]
}

async function main(argv: string[]): Promise<number> {
  const program = new Command('bench')
    .description('Sandstorm benchmarks: percentiles beside a baseline measured in the same run')
    .option('--only <names>', `run only these (comma-separated or repeated): ${benchmarks.map((b) => b.name).join(', ')}`, names)
    .option('--iterations <n>', "samples per benchmark instead of each one's default (idle-memory: its sandbox count; many-sandboxes: execs per sandbox a round)", positiveInt)
    .option('--json', 'print one JSON document instead of tables')
  const options = program.parse(argv).opts<CliOptions>()
  const selected = options.only ? benchmarks.filter((b) => options.only!.includes(b.name)) : benchmarks

  const skip = stackSkipReason()
  if (skip) {
    process.stderr.write(`bench: cannot run: ${skip}\n`)
    return 1
  }

  // The first Ctrl-C stops between samples and cleans up; a second one leaves at once.
  const interrupt = new AbortController()
  const onSigint = () => {
    if (interrupt.signal.aborted) process.exit(130)
    process.stderr.write('bench: interrupted, cleaning up (Ctrl-C again to leave at once, leaving sandboxes behind)\n')
    interrupt.abort()
  }
  process.on('SIGINT', onSigint)
  process.on('SIGTERM', onSigint)

  const machine = await machineInfo()
  if (!options.json) process.stdout.write(`${formatMachine(machine)}\n\n`)
  const results: BenchResult[] = []
  const failures: { name: string; error: string }[] = []
  const leftovers: string[] = []
  const stack = await startBenchStack()
  try {
    const ctx: BenchContext = {
      stack,
      iterations: options.iterations,
      signal: interrupt.signal,
      progress: (line) => process.stderr.write(`bench: ${line}\n`),
      leftovers: (items) => leftovers.push(...items),
    }
    for (const bench of selected) {
      if (interrupt.signal.aborted) break
      ctx.progress(`running ${bench.name}`)
      const startedAt = Date.now()
      try {
        const result = await bench.run(ctx)
        results.push(result)
        ctx.progress(`${bench.name} took ${((Date.now() - startedAt) / 1000).toFixed(1)} s`)
        if (!options.json) process.stdout.write(`${formatResult(result)}\n\n`)
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err)
        failures.push({ name: bench.name, error })
        process.stderr.write(`bench: ${bench.name} failed: ${error}\n`)
      }
    }
  } finally {
    leftovers.push(...(await stack.close()))
  }

  if (options.json) {
    process.stdout.write(`${JSON.stringify({ ...(toJson(machine, results, failures) as object), leftovers }, null, 2)}\n`)
  } else {
    process.stdout.write(leftovers.length === 0 ? 'cleanup: nothing left behind (sandboxes, mounts, cgroups, bare containers)\n' : `cleanup: LEFT BEHIND:\n  ${leftovers.join('\n  ')}\n`)
  }
  process.off('SIGINT', onSigint)
  process.off('SIGTERM', onSigint)
  return failures.length > 0 || leftovers.length > 0 || interrupt.signal.aborted ? 1 : 0
}

process.exitCode = await main(process.argv)
