/** `sandstorm rm ID...`: destroy sandboxes. */
import type { Command } from 'commander'
import { NotFoundError, Sandbox } from '@sandstorm/sdk'
import { connectionOf } from './cli-context.js'
import { exitCodeOf } from './exit-codes.js'
import { errorText, printable } from './terminal-text.js'

/** Registers `rm`. */
export function registerRm(program: Command): void {
  program
    .command('rm')
    .description('destroy sandboxes')
    .argument('<id...>', 'sandbox ids')
    .action(async (ids: string[], _flags: unknown, cmd: Command) => {
      const conn = connectionOf(cmd)
      if (ids.length === 1) {
        if (!(await Sandbox.kill(ids[0]!, conn))) throw new NotFoundError('not_found', `no sandbox "${ids[0]}"`)
        return
      }
      // Every id is tried, each failure reported; the first one decides the exit code.
      for (const id of ids) {
        try {
          if (!(await Sandbox.kill(id, conn))) throw new NotFoundError('not_found', `no sandbox "${id}"`)
        } catch (err) {
          process.exitCode ??= exitCodeOf(err)
          process.stderr.write(`sandstorm: ${printable(id)}: ${errorText(err)}\n`)
        }
      }
    })
}
