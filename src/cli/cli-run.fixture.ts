/** The real CLI run as a child process, for tests: its exit code and what it printed. */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

const mainPath = fileURLToPath(new URL('./main.js', import.meta.url))

/** How a run of the CLI ended. */
export interface Ran {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Runs `sandstorm ARGS` with `env` over ours, less every SANDSTORM_ variable of ours (and with no
 * data dir, so no local key is found), `input` on its stdin.
 */
export async function runCli(args: string[], env: Record<string, string>, input = ''): Promise<Ran> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SANDSTORM_')))
  const child = spawn(process.execPath, [mainPath, ...args], { env: { ...base, SANDSTORM_DATA_DIR: '/nonexistent', ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
  child.stdin.end(input)
  const out: Buffer[] = []
  const err: Buffer[] = []
  child.stdout.on('data', (d: Buffer) => out.push(d))
  child.stderr.on('data', (d: Buffer) => err.push(d))
  const [code] = (await once(child, 'close')) as [number | null]
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }
}
