/** `sandstorm exec ID [flags] -- CMD ARGS...`: run a command in a sandbox, exiting with its code. */
import type { Command } from 'commander'
import { InvalidArgumentError, Sandbox } from '@sandstorm/sdk'
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
  interactive?: boolean
  tty?: boolean
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
    .option('-i, --interactive', 'pass stdin on, even when it is a terminal')
    .option('-t, --tty', 'run the command on a terminal (with -i: keys go to it raw, as `docker exec -it`)')
    .action(async (id: string, argv: string[], flags: ExecFlags, cmd: Command) => {
      if (flags.tty) {
        if (flags.timeout !== undefined) throw new InvalidArgumentError('invalid_argument', '--timeout: not taken with -t (run `timeout` on the terminal)')
        // Loaded here: the terminal's WebSocket client is no part of a plain exec.
        const { openTerminal } = await import('./shell.js')
        process.exitCode = await openTerminal(id, argv, { user: flags.user, cwd: flags.cwd, envs: parseKeyValues(flags.env, '--env'), input: flags.interactive === true }, cmd)
        return
      }
      const timeoutMs = flags.timeout === undefined ? undefined : parseDuration(flags.timeout, '--timeout')
      const envs = parseKeyValues(flags.env, '--env')
      // No lookup first: the exec's own answer says when the sandbox is missing (404) or not started (409).
      const sbx = Sandbox.fromId(id, connectionOf(cmd))
      await runWithStdio(sbx, argv, { envs, cwd: flags.cwd, user: flags.user, timeoutMs, signal: interruptSignal(), stdin: flags.interactive ? true : flags.stdin ? undefined : false })
    })
}
