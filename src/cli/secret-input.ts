/**
 * Secrets given to the CLI other than in argv, which every local user can read (`ps`,
 * /proc/PID/cmdline): from a file, or from stdin. The environment (/proc/PID/environ) is readable
 * only by the same user and root.
 */
import { readFileSync } from 'node:fs'
import { InvalidArgumentError } from '@sandstorm/sdk'

/** Files already read: connectionOf runs more than once in some commands. */
const readFiles = new Map<string, string>()

/** The secret in file `path` (one line; a trailing newline is dropped), for `flag`. */
export function readSecretFile(path: string, flag: string): string {
  let secret = readFiles.get(path)
  if (secret === undefined) {
    let text: string
    try {
      text = readFileSync(path, 'utf8')
    } catch (err) {
      throw new InvalidArgumentError('invalid_argument', `${flag}: could not read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
    }
    secret = checked(text, flag, path)
    readFiles.set(path, secret)
  }
  return secret
}

/** The secret on stdin (read to its end; a trailing newline is dropped), for `flag`; refused on a terminal, where it would echo. */
export async function readSecretStdin(flag: string): Promise<string> {
  if (process.stdin.isTTY) throw new InvalidArgumentError('invalid_argument', `${flag}: expected the secret piped to stdin, got a terminal`)
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return checked(Buffer.concat(chunks).toString('utf8'), flag, 'stdin')
}

function checked(text: string, flag: string, where: string): string {
  const secret = text.replace(/\r?\n$/, '')
  if (secret === '' || secret.includes('\n')) throw new InvalidArgumentError('invalid_argument', `${flag}: expected one non-empty line in ${where}, got ${secret === '' ? 'none' : 'several'}`)
  return secret
}
