/** The `sandstorm` program: its commands, and how errors become one line and an exit code. */
import { Command, CommanderError } from 'commander'
import { CommandExitError, TimeoutError } from '@sandstorm/sdk'
import { exitCodeOf, exitCodes } from './exit-codes.js'
import { errorText } from './terminal-text.js'

/** Adds one command (and its subcommands) to the program. */
type Register = (program: Command) => void

/**
 * Every command's module with the root commands it adds, in the order help lists them. Each is loaded with import() (a part of
 * the bundle run only when called, scripts/build-cli.mjs), so that a start evaluates the command
 * it runs and not the other twenty with their dependencies (ws, tar-stream, ipaddr.js, node:crypto).
 */
const commandModules: ReadonlyArray<readonly [names: readonly string[], load: () => Promise<Register>]> = [
  [['up'], async () => (await import('./up.js')).registerUp],
  [['server'], async () => (await import('./server.js')).registerServer],
  [['agent'], async () => (await import('./agent.js')).registerAgent],
  [['agents', 'logs'], async () => (await import('./agents.js')).registerAgents],
  [['create'], async () => (await import('./create.js')).registerCreate],
  [['exec'], async () => (await import('./exec.js')).registerExec],
  [['shell'], async () => (await import('./shell.js')).registerShell],
  [['run'], async () => (await import('./run.js')).registerRun],
  [['ls'], async () => (await import('./ls.js')).registerLs],
  [['metrics'], async () => (await import('./metrics.js')).registerMetrics],
  [['rm'], async () => (await import('./rm.js')).registerRm],
  [['timeout'], async () => (await import('./timeout.js')).registerTimeout],
  [['network'], async () => (await import('./network.js')).registerNetwork],
  [['port-forward'], async () => (await import('./port-forward.js')).registerPortForward],
  [['cp'], async () => (await import('./cp.js')).registerCp],
  [['template'], async () => (await import('./template.js')).registerTemplate],
  [['snapshot', 'fork'], async () => (await import('./snapshot.js')).registerSnapshot],
  [['pool'], async () => (await import('./pool.js')).registerPool],
  [['setup'], async () => (await import('./setup.js')).registerSetup],
  [['doctor'], async () => (await import('./doctor.js')).registerDoctor],
  [['keys'], async () => (await import('./keys.js')).registerKeys],
]

/** The root program's options that take a value: the command name comes after them and their values. */
const globalValueOptions = ['--url', '--api-key', '--api-key-file']

/** What the root program answers alone, whatever commands it has. */
const versionFlags = ['-V', '--version']

/**
 * The commands the program needs for `args` (argv without node and the script): the one they
 * name, when they name one of ours before any option other than the global ones; none for
 * `--version`; all otherwise (`--help`, `help`, no command, a typo: help lists them all, and a
 * typo gets its suggestion).
 */
export function commandsFor(args: readonly string[]): { only: string } | 'none' | 'all' {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (globalValueOptions.includes(arg)) {
      i++
      continue
    }
    if (globalValueOptions.some((o) => arg.startsWith(`${o}=`))) continue
    if (versionFlags.includes(arg)) return 'none'
    if (arg.startsWith('-')) return 'all'
    return commandModules.some(([names]) => names.includes(arg)) ? { only: arg } : 'all'
  }
  return 'all'
}

/** The program with the commands that `argv` needs registered (see commandsFor); `main` parses and exits. */
export async function createProgram(argv: readonly string[] = process.argv): Promise<Command> {
  const program = new Command('sandstorm')
    .description('fast, isolated, self-hosted sandboxes')
    .version('0.1.0')
    .option('--url <url>', 'server URL (default $SANDSTORM_URL, else http://127.0.0.1:7420)')
    .option('--api-key <key>', 'API key (default $SANDSTORM_API_KEY, else <data dir>/api-key); argv is visible to other local users (ps): prefer $SANDSTORM_API_KEY or --api-key-file')
    .option('--api-key-file <path>', 'read the API key from this file (one line)')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (text, write) => write(`sandstorm: ${text.replace(/^error: /, '')}`) })
    .exitOverride()
  const needed = commandsFor(argv.slice(2))
  const wanted = needed === 'none' ? [] : commandModules.filter(([names]) => needed === 'all' || names.includes(needed.only))
  for (const register of await Promise.all(wanted.map(([, load]) => load()))) register(program)
  // Subcommands report usage errors through the same override, instead of exiting on their own.
  for (const cmd of allCommands(program)) cmd.exitOverride().configureOutput(program.configureOutput())
  return program
}

function allCommands(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...allCommands(c)])
}

/**
 * What to print for an error, or nothing when the command already said it (its own stderr). The
 * message may hold a server's, an agent's or a guest's text: only its first line is shown, printable.
 */
export function errorLine(err: unknown): string | undefined {
  if (err instanceof CommandExitError) return undefined
  if (err instanceof TimeoutError && err.result) return `sandstorm: the command timed out after ${err.result.durationMs} ms and was killed`
  return `sandstorm: ${errorText(err)}`
}

/** Parses argv, runs the command, and exits with the code exit-codes.ts gives. */
export async function main(argv: string[] = process.argv): Promise<never> {
  let code: number
  try {
    await (await createProgram(argv)).parseAsync(argv)
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
