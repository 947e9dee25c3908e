/** `sandstorm keys create [--e2b]`: a new API key for the server whose data dir this is. */
import type { Command } from 'commander'
import { printJson } from './cli-context.js'
import { defaultDataDir } from './template.js'

interface KeysCreateFlags {
  dataDir: string
  e2b?: boolean
  json?: boolean
}

/** Registers `keys`. */
export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('API keys of the server on this machine')
  keys
    .command('create')
    .description('create an API key and print it (only its hash is stored: keep it); a running server accepts it at once')
    .option('--data-dir <dir>', "the server's data directory", defaultDataDir())
    .option('--e2b', "E2B's key form e2b_<hex>, for E2B_API_KEY")
    .option('--json', 'print {"apiKey": ...} as JSON')
    .action(async (flags: KeysCreateFlags) => {
      // Loaded here so that other commands do not load SQLite.
      const { createApiKeyInDataDir } = await import('../server/index.js')
      const apiKey = createApiKeyInDataDir(flags.dataDir, flags.e2b ? 'e2b' : 'sandstorm')
      if (flags.json) printJson({ apiKey })
      else process.stdout.write(`${apiKey}\n`)
    })
}
