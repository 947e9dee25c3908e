/** `up`'s default warm pools: `--pool TEMPLATE=N` (repeatable), `--no-pool`, and $SANDSTORM_POOLS. */
import type { Command } from 'commander'
import { InvalidArgumentError } from '@sandstorm/sdk'
import { maxPoolSize } from '../shared/index.js'
import type { PoolConfig } from '../server/pools/index.js'

/** Raw values of the pool flags: the `--pool` entries given, or false after `--no-pool`. */
export interface PoolFlags {
  pool?: string[] | false
}

/** The environment variable read when no pool flag is given: `debian=2,base=1`, or `none`. */
export const poolsEnv = 'SANDSTORM_POOLS'

/**
 * Ready sandboxes `up` keeps of each default template. Two, so that a first create and the one
 * right after it (a test's setup and its first case, or E2B's create and a second agent) are both
 * hand-overs while the first refill runs. Not more: an idle runc sandbox is one small init process,
 * but each also holds a netns with its veth and a writable layer, kept whether or not it is used.
 */
export const defaultPoolSize = 2

/**
 * The templates `up` keeps pools of: `debian`, what `sandstorm run`/`create` and the SDK start by
 * default, and `base`, what E2B's `Sandbox.create()` asks for. Both are built by setup.
 */
export const defaultPoolTemplates = ['debian', 'base'] as const

/** The pools `up` keeps when neither a flag nor the environment names any. */
export const defaultPools: readonly PoolConfig[] = defaultPoolTemplates.map((template) => ({ template, min: defaultPoolSize, max: defaultPoolSize }))

/** Adds `--pool` and `--no-pool`; the one given last wins (`--no-pool` drops the `--pool`s before it). */
export function addPoolFlags(cmd: Command): Command {
  return cmd
    .option(
      '--pool <template=n>',
      `keep N sandboxes of TEMPLATE ready (repeatable; replaces the default ${defaultPools.map((p) => `${p.template}=${p.min}`).join(' ')}; also $${poolsEnv}="debian=2,base=1"). ` +
        'A pool set with `sandstorm pool set` wins over these; `sandstorm pool rm` of one lasts until the next start',
      (value: string, previous: string[] | false | undefined) => [...(Array.isArray(previous) ? previous : []), value],
    )
    .option('--no-pool', `keep no default pools (also $${poolsEnv}=none); pools set with \`sandstorm pool set\` are kept`)
}

/** Where `up`'s pools came from: the flags, the environment, or the built-in defaults. */
export type PoolsSource = 'flags' | 'env' | 'defaults'

/**
 * The pools `up` keeps by default, checked here so that a bad value exits 2 before anything starts:
 * the flags when given, else $SANDSTORM_POOLS when set and not empty, else `defaultPools`.
 */
export function poolsOf(flags: PoolFlags, env: NodeJS.ProcessEnv = process.env): { pools: PoolConfig[]; source: PoolsSource } {
  if (flags.pool === false) return { pools: [], source: 'flags' }
  if (flags.pool !== undefined) return { pools: parsePoolList(flags.pool, '--pool'), source: 'flags' }
  const fromEnv = env[poolsEnv]?.trim()
  if (fromEnv) {
    if (fromEnv === 'none') return { pools: [], source: 'env' }
    return { pools: parsePoolList(fromEnv.split(/[\s,]+/).filter(Boolean), poolsEnv), source: 'env' }
  }
  return { pools: defaultPools.map((p) => ({ ...p })), source: 'defaults' }
}

/** Parses `TEMPLATE=N` entries, each template at most once. */
export function parsePoolList(entries: string[], flag: string): PoolConfig[] {
  const pools: PoolConfig[] = []
  for (const entry of entries) {
    const pool = parsePoolEntry(entry, flag)
    if (pools.some((p) => p.template === pool.template)) {
      throw new InvalidArgumentError('invalid_argument', `${flag}: expected each template once, got "${pool.template}" twice`)
    }
    pools.push(pool)
  }
  return pools
}

/** Parses one `TEMPLATE=N`: N ready sandboxes, N at most (a pool set through the API may grow). */
export function parsePoolEntry(entry: string, flag: string): PoolConfig {
  const match = /^([^\s=,]+)=(\d+)$/.exec(entry.trim())
  const size = match ? Number(match[2]) : NaN
  if (!match || !Number.isSafeInteger(size) || size < 1 || size > maxPoolSize) {
    throw new InvalidArgumentError('invalid_argument', `${flag}: expected TEMPLATE=N, a template name and a count from 1 to ${maxPoolSize} (such as debian=2), got "${entry}"`)
  }
  return { template: match[1]!, min: size, max: size }
}
