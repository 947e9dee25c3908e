/** `sandstorm run [create flags] -- CMD ARGS...`: create a sandbox, run one command, destroy it. */
import type { Command } from 'commander'
import { AbortError, Sandbox } from '@sandstorm/sdk'
import { connectionOf } from './cli-context.js'
import { runWithStdio } from './command-stdio.js'
import { addCreateFlags, createOptionsOf, type CreateFlags } from './create-options.js'
import { interruptSignal } from './interrupt.js'
import { errorText, printable } from './terminal-text.js'

interface RunFlags extends CreateFlags {
  cwd?: string
  user?: string
  stdin: boolean
}

/** Room the sandbox gets past the command's own timeout, to report the result before it expires. */
const sandboxMarginMs = 60_000

/** Registers `run`. */
export function registerRun(program: Command): void {
  addCreateFlags(
    program
      .command('run')
      .description('create a sandbox, run a command in it, and destroy it (also on error and Ctrl-C); exits with the command\'s code')
      .argument('<command...>', 'the command and its arguments, after --'),
  )
    .option('--cwd <dir>', 'working directory inside the sandbox')
    .option('--user <user>', 'user name or uid to run as (default root)')
    .option('--no-stdin', 'do not pass stdin on, even when it is not a terminal')
    .action(async (argv: string[], flags: RunFlags, cmd: Command) => {
      const options = createOptionsOf(flags)
      // --timeout bounds the command (exit 124 past it); the sandbox lives a little longer.
      const commandTimeoutMs = options.timeoutMs
      if (commandTimeoutMs !== undefined) options.timeoutMs = commandTimeoutMs + sandboxMarginMs
      const conn = connectionOf(cmd)
      const signal = interruptSignal()
      // Create is not cancelled midway: a sandbox the server made after we stopped listening would
      // be left behind. An interrupt during it is acted on right after, by the cleanup below.
      const sbx = await Sandbox.create(flags.template, { ...conn, ...options })
      try {
        if (signal.aborted) throw new AbortError('interrupted before the command started')
        await runWithStdio(sbx, argv, { cwd: flags.cwd, user: flags.user, timeoutMs: commandTimeoutMs, signal, stdin: flags.stdin ? undefined : false })
      } finally {
        // Not bound to the interrupt signal: destroying is the point of cleaning up after Ctrl-C.
        // wait: false: the server destroys it on its own once it is marked (even if it closes meanwhile).
        await sbx.kill({ wait: false }).catch((err: unknown) => {
          process.stderr.write(`sandstorm: could not destroy sandbox ${printable(sbx.sandboxId)}: ${errorText(err)}\n`)
        })
      }
    })
}
