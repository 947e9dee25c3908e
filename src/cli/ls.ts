/** `sandstorm ls`: list sandboxes as a table, or JSON. */
import type { Command } from 'commander'
import { Sandbox, type SandboxInfo } from '@sandstorm/sdk'
import { connectionOf, printJson, printTable } from './cli-context.js'
import { formatDuration, parseDuration } from './duration.js'
import { collect, parseKeyValues } from './key-value.js'

/** Rows of the `ls` table for sandboxes, ages and expiries relative to `nowMs`. */
export function sandboxRows(list: SandboxInfo[], nowMs: number): string[][] {
  return list.map((s) => {
    const left = Date.parse(s.expiresAt) - nowMs
    return [
      s.id,
      s.template,
      s.runtime,
      s.state,
      `${s.memoryMiB}MiB`,
      String(s.cpus),
      formatDuration(nowMs - Date.parse(s.createdAt)),
      left > 0 ? `in ${formatDuration(left)}` : 'now',
    ]
  })
}

/** Registers `ls`. */
export function registerLs(program: Command): void {
  program
    .command('ls')
    .description('list sandboxes')
    .option('--label <k=v>', 'only sandboxes with this label (repeatable; all must match)', collect)
    .option('--state <state>', 'only sandboxes in this state (running, paused, ...; repeatable)', collect)
    .option('--template <name>', 'only sandboxes of this template')
    .option('--since <duration>', 'only sandboxes started in the last DURATION, such as 10m or 2h')
    .option('--newest-first', 'newest first (default: oldest first)')
    .option('--json', 'print JSON')
    .action(async (flags: { label?: string[]; state?: SandboxInfo['state'][]; template?: string; since?: string; newestFirst?: boolean; json?: boolean }, cmd: Command) => {
      const list = await Sandbox.list({
        ...connectionOf(cmd),
        labels: parseKeyValues(flags.label, '--label'),
        ...(flags.state ? { state: flags.state } : {}),
        ...(flags.template ? { template: flags.template } : {}),
        ...(flags.since ? { startedAfter: new Date(Date.now() - parseDuration(flags.since, '--since')) } : {}),
        ...(flags.newestFirst ? { order: 'desc' as const } : {}),
      })
      if (flags.json) return printJson(list)
      printTable(['ID', 'TEMPLATE', 'RUNTIME', 'STATE', 'MEMORY', 'CPUS', 'AGE', 'EXPIRES'], sandboxRows(list, Date.now()))
    })
}
