/** The `sandstorm` program: its commands, and how errors become one line and an exit code. */
import { Command, CommanderError } from 'commander'
import { CommandExitError, TimeoutError } from '@sandstorm/sdk'
import { registerAgent } from './agent.js'
import { registerAgents } from './agents.js'
import { registerCp } from './cp.js'
import { registerCreate } from './create.js'
import { registerDoctor } from './doctor.js'
import { registerExec } from './exec.js'
import { registerKeys } from './keys.js'
import { exitCodeOf, exitCodes } from './exit-codes.js'
import { registerLs } from './ls.js'
import { registerMetrics } from './metrics.js'
import { registerNetwork } from './network.js'
import { registerPortForward } from './port-forward.js'
import { registerRm } from './rm.js'
import { registerPool } from './pool.js'
import { registerRun } from './run.js'
import { registerServer } from './server.js'
import { registerSetup } from './setup.js'
import { registerShell } from './shell.js'
import { registerSnapshot } from './snapshot.js'
import { registerTemplate } from './template.js'
import { registerTimeout } from './timeout.js'
import { registerUp } from './up.js'

/** The program with every command registered; `run` parses and exits. */
export function createProgram(): Command {
  const program = new Command('sandstorm')
    .description('fast, isolated, self-hosted sandboxes')
    .version('0.1.0')
    .option('--url <url>', 'server URL (default $SANDSTORM_URL, else http://127.0.0.1:7420)')
    .option('--api-key <key>', 'API key (default $SANDSTORM_API_KEY, else <data dir>/api-key)')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (text, write) => write(`sandstorm: ${text.replace(/^error: /, '')}`) })
    .exitOverride()
  registerUp(program)
  registerServer(program)
  registerAgent(program)
  registerAgents(program)
  registerCreate(program)
  registerExec(program)
  registerShell(program)
  registerRun(program)
  registerLs(program)
  registerMetrics(program)
  registerRm(program)
  registerTimeout(program)
  registerNetwork(program)
  registerPortForward(program)
  registerCp(program)
  registerTemplate(program)
  registerSnapshot(program)
  registerPool(program)
  registerSetup(program)
  registerDoctor(program)
  registerKeys(program)
  // Subcommands report usage errors through the same override, instead of exiting on their own.
  for (const cmd of allCommands(program)) cmd.exitOverride().configureOutput(program.configureOutput())
  return program
}

function allCommands(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...allCommands(c)])
}

/** What to print for an error, or nothing when the command already said it (its own stderr). */
export function errorLine(err: unknown): string | undefined {
  if (err instanceof CommandExitError) return undefined
  if (err instanceof TimeoutError && err.result) return `sandstorm: the command timed out after ${err.result.durationMs} ms and was killed`
  const message = err instanceof Error ? err.message : String(err)
  return `sandstorm: ${message.split('\n')[0]}`
}

/** Parses argv, runs the command, and exits with the code exit-codes.ts gives. */
export async function main(argv: string[] = process.argv): Promise<never> {
  let code: number
  try {
    await createProgram().parseAsync(argv)
    code = typeof process.exitCode === 'number' ? process.exitCode : exitCodes.ok
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander printed its message already; help and version are not errors.
      code = err.exitCode === 0 ? exitCodes.ok : exitCodes.usage
    } else {
      const line = errorLine(err)
      if (line) process.stderr.write(`${line}\n`)
      if (process.env.SANDSTORM_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`)
      code = exitCodeOf(err)
    }
  }
  // Wait for stdout to drain before exiting: a pipe reader must get everything.
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()))
  process.exit(code)
}
