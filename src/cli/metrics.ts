/** `sandstorm metrics ID [--since 5m]`: a sandbox's usage, sampled every few seconds, as a table or JSON. */
import type { Command } from 'commander'
import { Sandbox, type SandboxMetrics } from '@sandstorm/sdk'
import { connectionOf, printJson, printTable } from './cli-context.js'
import { parseDuration } from './duration.js'

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)}MiB`

/** Rows of the `metrics` table: one per sample, oldest first. */
export function metricsRows(samples: SandboxMetrics[]): string[][] {
  return samples.map((m) => [
    m.timestamp.replace(/\.\d+Z$/, 'Z'),
    `${m.cpuUsedPct.toFixed(1)}%`,
    String(m.cpus),
    `${mib(m.memoryUsedBytes)}/${mib(m.memoryLimitBytes)}`,
    `${mib(m.diskUsedBytes)}/${mib(m.diskLimitBytes)}`,
    String(m.pids),
  ])
}

/** Registers `metrics`. */
export function registerMetrics(program: Command): void {
  program
    .command('metrics')
    .description("a sandbox's CPU, memory, disk and processes, sampled every few seconds over its life")
    .argument('<id>', 'sandbox id')
    .option('--since <duration>', 'only the samples of the last DURATION, such as 30s, 5m, 2h (default: its whole life)')
    .option('--json', 'print JSON')
    .action(async (id: string, flags: { since?: string; json?: boolean }, cmd: Command) => {
      const start = flags.since === undefined ? undefined : new Date(Date.now() - parseDuration(flags.since, '--since'))
      const samples = await Sandbox.getMetrics(id, { ...connectionOf(cmd), ...(start ? { start } : {}) })
      if (flags.json) return printJson(samples)
      printTable(['TIME', 'CPU', 'CPUS', 'MEMORY', 'DISK', 'PIDS'], metricsRows(samples))
    })
}
