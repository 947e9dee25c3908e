/** `sandstorm exec ID [flags] -- CMD ARGS...`: run a command in a sandbox, exiting with its code. */
import type { Command } from 'commander'
import { Sandbox } from '@sandstorm/sdk'
import { connectionOf } from './cli-context.js'
import { runWithStdio } from './command-stdio.js'
import { parseDuration } from './duration.js'
import { collect, parseKeyValues } from './key-value.js'
import { interruptSignal } from './interrupt.js'

interface ExecFlags {
  env?: string[]
  cwd?: string
  user?: string
  timeout?: string
  stdin: boolean
}

/** Registers `exec`. */
export function registerExec(program: Command): void {
  program
    .command('exec')
    .description('run a command in a sandbox; stdout and stderr stream through, stdin too when it is not a terminal')
    .argument('<id>', 'sandbox id')
    .argument('<command...>', 'the command and its arguments, after --')
    .option('--env <K=V>', 'environment variable (repeatable)', collect)
    .option('--cwd <dir>', 'working directory inside the sandbox')
    .option('--user <user>', 'user name or uid to run as (default root)')
    .option('--timeout <duration>', 'kill the command after this long (500ms, 30s, 10m); exit 124')
    .option('--no-stdin', 'do not pass stdin on, even when it is not a terminal')
    .action(async (id: string, argv: string[], flags: ExecFlags, cmd: Command) => {
      const timeoutMs = flags.timeout === undefined ? undefined : parseDuration(flags.timeout, '--timeout')
      const envs = parseKeyValues(flags.env, '--env')
      const sbx = await Sandbox.connect(id, connectionOf(cmd))
      await runWithStdio(sbx, argv, { envs, cwd: flags.cwd, user: flags.user, timeoutMs, signal: interruptSignal(), stdin: flags.stdin ? undefined : false })
    })
}
