/** `sandstorm shell ID [--user U] [--cwd D] [-- CMD...]`: a terminal in a sandbox, exiting with its command's code. */
import type { Command } from 'commander'
import { Sandbox } from '@sandstorm/sdk'
import { connectionOf } from './cli-context.js'
import { collect, parseKeyValues } from './key-value.js'

interface ShellFlags {
  user?: string
  cwd?: string
  env?: string[]
}

/** Registers `shell`. */
export function registerShell(program: Command): void {
  program
    .command('shell')
    .description('open a terminal in a sandbox: its login shell (bash, else sh), or the command after --')
    .argument('<id>', 'sandbox id')
    .argument('[command...]', 'a command to run on the terminal instead of the shell, after --')
    .option('--user <user>', 'user name or uid to run as (default root)')
    .option('--cwd <dir>', 'working directory inside the sandbox (default the user\'s home)')
    .option('--env <K=V>', 'environment variable (repeatable)', collect)
    .action(async (id: string, argv: string[], flags: ShellFlags, cmd: Command) => {
      process.exitCode = await openTerminal(id, argv, { user: flags.user, cwd: flags.cwd, envs: parseKeyValues(flags.env, '--env'), input: true }, cmd)
    })
}

/** Connects to the sandbox (so that an unknown or stopped one is named before anything else) and runs the session. */
export async function openTerminal(id: string, argv: string[], options: { user?: string; cwd?: string; envs?: Record<string, string>; input: boolean }, cmd: Command): Promise<number> {
  const sbx = await Sandbox.connect(id, connectionOf(cmd))
  // Loaded here: its WebSocket client (ws, with tls, zlib, https) would slow every CLI start.
  const { runTerminalSession } = await import('./terminal-session.js')
  return runTerminalSession(sbx, { ...options, ...(argv.length > 0 ? { cmd: argv } : {}) })
}
