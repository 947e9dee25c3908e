/** `sandstorm pool` (table), `pool set TEMPLATE --min N --max N`, `pool rm TEMPLATE`. */
import type { Command } from 'commander'
import { deletePool, InvalidArgumentError, listPools, setPool, type PoolInfo } from '@sandstorm/sdk'
import { connectionOf, printJson, printTable } from './cli-context.js'

/** Parses a whole number flag that may be 0. */
function parseCount(text: string, flag: string): number {
  const n = Number(text)
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('invalid_argument', `${flag}: expected a whole number (0 or more), got "${text}"`)
  return n
}

function printPools(pools: PoolInfo[]): void {
  printTable(
    ['TEMPLATE', 'MIN', 'MAX', 'READY', 'STARTING', 'IN USE', 'HITS', 'MISSES', 'DEFAULT'],
    pools.map((p) => [p.template, String(p.min), String(p.max), String(p.ready), String(p.starting), String(p.inUse), String(p.hits), String(p.misses), p.default ? 'yes' : '']),
  )
}

/** Registers `pool` with `set` and `rm`. */
export function registerPool(program: Command): void {
  const pool = program
    .command('pool')
    .description('list warm pools: sandboxes started ahead of demand, per template')
    .option('--json', 'print JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => {
      const pools = await listPools(connectionOf(cmd))
      if (flags.json) printJson(pools)
      else printPools(pools)
    })
  pool
    .command('set')
    .description('create or resize the warm pool of a template')
    .argument('<template>', 'template name')
    .requiredOption('--min <n>', 'ready sandboxes kept at all times')
    .option('--max <n>', 'most pooled sandboxes at once (default: min, at least 1)')
    .option('--json', 'print the pool as JSON')
    .action(async (template: string, flags: { min: string; max?: string; json?: boolean }, cmd: Command) => {
      const min = parseCount(flags.min, '--min')
      const max = flags.max === undefined ? Math.max(min, 1) : parseCount(flags.max, '--max')
      const info = await setPool(template, { ...connectionOf(cmd), min, max })
      if (flags.json || cmd.parent?.opts<{ json?: boolean }>().json) printJson(info)
      else printPools([info])
    })
  pool
    .command('rm')
    .description('delete the warm pool of a template (its ready sandboxes are destroyed; a default pool of `sandstorm up` comes back at its next start)')
    .argument('<template>', 'template name')
    .action(async (template: string, _flags: unknown, cmd: Command) => {
      await deletePool(template, connectionOf(cmd))
    })
}
