/** `sandstorm create`: make a sandbox and print its id (or its info with --json). */
import type { Command } from 'commander'
import { Sandbox } from '@sandstorm/sdk'
import { connectionOf, printJson } from './cli-context.js'
import { addCreateFlags, createOptionsOf, type CreateFlags } from './create-options.js'

/** Registers `create`. */
export function registerCreate(program: Command): void {
  addCreateFlags(program.command('create').description('create a sandbox and print its id'))
    .option('--json', 'print the sandbox as JSON')
    .action(async (flags: CreateFlags & { json?: boolean }, cmd: Command) => {
      const conn = connectionOf(cmd)
      const sbx = await Sandbox.create(flags.template, { ...conn, ...createOptionsOf(flags) })
      if (flags.json) printJson({ ...(await sbx.getInfo()), ...sbx.start })
      else process.stdout.write(`${sbx.sandboxId}\n`)
      // A golden template that could not be used is worth a line: the sandbox lacks its saved state.
      if (sbx.start.sourceReason) process.stderr.write(`sandstorm: started cold: ${sbx.start.sourceReason}\n`)
    })
}
