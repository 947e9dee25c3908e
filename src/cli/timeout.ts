/** `sandstorm timeout ID DURATION`: set when a sandbox expires, counted from now. */
import type { Command } from 'commander'
import { Sandbox } from '@sandstorm/sdk'
import { connectionOf, printJson } from './cli-context.js'
import { parseDuration } from './duration.js'

/** Registers `timeout`. */
export function registerTimeout(program: Command): void {
  program
    .command('timeout')
    .description("set a sandbox's timeout to DURATION from now (extending or shortening it); prints the new expiry")
    .argument('<id>', 'sandbox id')
    .argument('<duration>', 'such as 30s, 10m, 2h')
    .option('--json', 'print the sandbox as JSON')
    .action(async (id: string, duration: string, flags: { json?: boolean }, cmd: Command) => {
      const info = await Sandbox.setTimeout(id, parseDuration(duration), connectionOf(cmd))
      if (flags.json) printJson(info)
      else process.stdout.write(`${info.expiresAt}\n`)
    })
}
