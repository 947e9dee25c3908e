/** The `sandstorm` CLI as a user runs it: a process of its own, pointed at a test stack through its environment. */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { Stack } from './stack.js'

/** dist/test/helpers/cli-process.js -> dist/src/cli/main.js */
export const cliMain = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))

/** How a CLI run ended, and what it printed. */
export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs `sandstorm ...args` against the stack (SANDSTORM_URL and SANDSTORM_API_KEY) and collects its output. */
export async function runCli(stack: Pick<Stack, 'conn'>, ...args: string[]): Promise<CliResult> {
  const child = spawn(process.execPath, [cliMain, ...args], {
    env: { ...process.env, SANDSTORM_URL: stack.conn.apiUrl, SANDSTORM_API_KEY: stack.conn.apiKey, SANDSTORM_DEBUG: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d))
  child.stderr.on('data', (d: Buffer) => (stderr += d))
  const [code] = (await once(child, 'close')) as [number | null]
  return { code, stdout, stderr }
}
