/**
 * Small helpers for tests that attack a sandbox from inside: run a command and keep its result
 * whatever its exit code (the attack is expected to fail), and fingerprint host files.
 */
import { createHash } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { CommandExitError, type CommandResult, type CommandRunOptions, type Sandbox } from '@sandstorm/sdk'

/** How long one attacking command may run before the server kills it. @default in sh() */
const commandTimeoutMs = 30_000

/** Runs `cmd` (a string for /bin/sh, or an argv) and resolves with its result, also on a non-zero exit. */
export async function sh(sbx: Sandbox, cmd: string | string[], options: CommandRunOptions & { background?: false } = {}): Promise<CommandResult> {
  try {
    return await sbx.commands.run(cmd, { timeoutMs: commandTimeoutMs, ...options })
  } catch (err) {
    if (err instanceof CommandExitError) return err.result
    throw err
  }
}

/** Runs a Python program inside the sandbox (argv form, so no shell quoting is involved). */
export function python(sbx: Sandbox, code: string, options: CommandRunOptions & { background?: false } = {}): Promise<CommandResult> {
  return sh(sbx, ['python3', '-c', code], options)
}

/** What a host file looks like: its content hash and mtime, to prove an attack left it alone. */
export async function fingerprint(path: string): Promise<{ sha256: string; mtimeMs: number; size: number }> {
  const [bytes, info] = await Promise.all([readFile(path), stat(path)])
  return { sha256: createHash('sha256').update(bytes).digest('hex'), mtimeMs: info.mtimeMs, size: info.size }
}
