/** The sandbox flags that `create` and `run` share. */
import type { Command } from 'commander'
import { InvalidArgumentError, type SandboxCreateOptions } from '@sandstorm/sdk'
import { runtimeNames, type RuntimeName } from '../shared/index.js'
import { parsePositiveInt, parsePositiveNumber } from './cli-context.js'
import { parseDiskMiB } from './disk-size.js'
import { parseDuration } from './duration.js'
import { collect, parseKeyValues } from './key-value.js'
import { addSandboxNetworkFlags, sandboxNetworkOf, type SandboxNetworkFlags } from './network-flags.js'

/** Raw values of the create flags. */
export interface CreateFlags extends SandboxNetworkFlags {
  template: string
  memory?: string
  cpus?: string
  timeout?: string
  disk?: string
  label?: string[]
  env?: string[]
  runtime?: string
}

/** A `--runtime` value, checked against the runtimes Sandstorm knows. */
export function parseRuntime(value: string, flag = '--runtime'): RuntimeName {
  if ((runtimeNames as readonly string[]).includes(value)) return value as RuntimeName
  throw new InvalidArgumentError('invalid_argument', `${flag}: expected one of ${runtimeNames.join(', ')}, got "${value}"`)
}

/** Adds `--template --memory --cpus --disk --timeout --label --env --runtime` and the network flags to a command. */
export function addCreateFlags(cmd: Command): Command {
  return addSandboxNetworkFlags(
    cmd
      .option('--template <name>', 'template to start from', 'debian')
      .option('--memory <MiB>', 'memory limit in MiB')
      .option('--cpus <n>', 'CPU limit (fractions allowed)')
      .option('--disk <size>', "disk quota: the most the sandbox writes to its root (MiB, or 512M, 10G; default: the template's, else the server's)")
      .option('--timeout <duration>', 'destroy the sandbox after this long (500ms, 30s, 10m, 2h)')
      .option('--label <k=v>', 'a label (repeatable)', collect)
      .option('--env <K=V>', 'an environment variable for every command (repeatable)', collect)
      .option('--runtime <name>', `${runtimeNames.join(' or ')}: a container or a microVM with its own kernel (default: the server's)`),
  )
}

/** The SDK options for the flags, validated here so that a bad flag exits 2 before any request. */
export function createOptionsOf(flags: CreateFlags): SandboxCreateOptions {
  const out: SandboxCreateOptions = {}
  if (flags.memory !== undefined) out.memoryMiB = parsePositiveInt(flags.memory, '--memory')
  if (flags.cpus !== undefined) out.cpus = parsePositiveNumber(flags.cpus, '--cpus')
  if (flags.disk !== undefined) out.diskMiB = parseDiskMiB(flags.disk, '--disk')
  if (flags.timeout !== undefined) out.timeoutMs = parseDuration(flags.timeout, '--timeout')
  const labels = parseKeyValues(flags.label, '--label')
  if (labels) out.labels = labels
  const env = parseKeyValues(flags.env, '--env')
  if (env) out.env = env
  if (flags.runtime !== undefined) out.runtime = parseRuntime(flags.runtime)
  const network = sandboxNetworkOf(flags)
  if (network !== undefined) out.network = network
  return out
}
