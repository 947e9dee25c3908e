/** The sandbox flags that `create` and `run` share. */
import type { Command } from 'commander'
import type { SandboxCreateOptions } from '../sdk/index.js'
import { parsePositiveInt, parsePositiveNumber } from './cli-context.js'
import { parseDuration } from './duration.js'
import { collect, parseKeyValues } from './key-value.js'

/** Raw values of the create flags. */
export interface CreateFlags {
  template: string
  memory?: string
  cpus?: string
  timeout?: string
  label?: string[]
  env?: string[]
}

/** Adds `--template --memory --cpus --timeout --label --env` to a command. */
export function addCreateFlags(cmd: Command): Command {
  return cmd
    .option('--template <name>', 'template to start from', 'debian')
    .option('--memory <MiB>', 'memory limit in MiB')
    .option('--cpus <n>', 'CPU limit (fractions allowed)')
    .option('--timeout <duration>', 'destroy the sandbox after this long (500ms, 30s, 10m, 2h)')
    .option('--label <k=v>', 'a label (repeatable)', collect)
    .option('--env <K=V>', 'an environment variable for every command (repeatable)', collect)
}

/** The SDK options for the flags, validated here so that a bad flag exits 2 before any request. */
export function createOptionsOf(flags: CreateFlags): SandboxCreateOptions {
  const out: SandboxCreateOptions = {}
  if (flags.memory !== undefined) out.memoryMiB = parsePositiveInt(flags.memory, '--memory')
  if (flags.cpus !== undefined) out.cpus = parsePositiveNumber(flags.cpus, '--cpus')
  if (flags.timeout !== undefined) out.timeoutMs = parseDuration(flags.timeout, '--timeout')
  const labels = parseKeyValues(flags.label, '--label')
  if (labels) out.labels = labels
  const env = parseKeyValues(flags.env, '--env')
  if (env) out.env = env
  return out
}
