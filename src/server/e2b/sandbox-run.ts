/** Short helper commands run inside a sandbox on behalf of envd calls (file ops as the caller's user). */
import type { AgentApi } from '../../agent/index.js'
import { maxHelperStderrBytes, maxHelperStdoutBytes, SandstormError } from '../../shared/index.js'
import type { ErrorCode } from '../../shared/index.js'

/** What a helper printed and how it ended. */
export interface RunOutput {
  exitCode: number
  stdout: Buffer
  stderr: string
}

/** Options of runInSandbox. */
export interface RunOptions {
  /** @default 'root' */
  user?: string
  /** Bytes written to stdin, then stdin is closed; none closes it at once. */
  stdin?: AsyncIterable<Uint8Array>
  signal?: AbortSignal
  /** Called with the pid as soon as it is known (to hide helpers from `commands.list`). */
  onPid?(pid: number): void
  /** The most stdout kept; past it the helper is killed and the call fails `resource_exhausted`. @default maxHelperStdoutBytes (64 MiB) */
  maxStdoutBytes?: number
  /** Sees each stdout chunk as it comes; what it throws kills the helper and fails the call (a bound on what the output holds). */
  onStdout?(chunk: Buffer): void
}

/** Runs argv inside the sandbox and collects its output. */
export async function runInSandbox(agent: AgentApi, id: string, argv: string[], options: RunOptions = {}): Promise<RunOutput> {
  const { signal } = options
  const { pid } = await agent.exec(id, { argv, env: {}, user: options.user ?? 'root', keepStdin: options.stdin !== undefined }, { signal })
  options.onPid?.(pid)
  const output = collect(agent.follow(id, pid, { signal }), options.maxStdoutBytes ?? maxHelperStdoutBytes, options.onStdout).catch(async (err: unknown) => {
    await agent.signal(id, pid, 'SIGKILL').catch(() => undefined)
    throw err
  })
  // Waited for below, maybe only after the input: a helper that fails while its input is still
  // written (past its output's bound) must not leave this rejection unhandled, which ends Node.
  output.catch(() => undefined)
  if (options.stdin) {
    // The writes stop once the output failed: the helper may never read its input.
    const failed = new Promise<never>((_, reject) => void output.catch(reject))
    failed.catch(() => undefined)
    try {
      for await (const chunk of options.stdin) await Promise.race([agent.writeStdin(id, pid, chunk, false, { signal }), failed])
      await Promise.race([agent.writeStdin(id, pid, null, true, { signal }), failed])
    } catch (err) {
      // A helper that failed early (no permission, ...) stops reading; its own error says why.
      await agent.signal(id, pid, 'SIGKILL').catch(() => undefined)
      const ended = await output.catch(() => undefined)
      if (ended && ended.exitCode !== 0 && ended.stderr.trim() !== '' && !(err instanceof SandstormError && err.code === 'payload_too_large')) return ended
      throw err
    }
  }
  return output
}

/** A helper's output to its end; rejects once stdout passes `maxStdout`, or when `onStdout` throws. */
async function collect(events: AsyncIterable<import('../../shared/index.js').ExecEvent>, maxStdout: number, onStdout?: (chunk: Buffer) => void): Promise<RunOutput> {
  const out: Buffer[] = []
  const err: Buffer[] = []
  let outBytes = 0
  let errBytes = 0
  for await (const event of events) {
    if (event.type === 'stdout') {
      const chunk = Buffer.from(event.data, 'base64')
      outBytes += chunk.length
      if (outBytes > maxStdout) throw new SandstormError('resource_exhausted', `the answer is larger than the ${sizeText(maxStdout)} a helper may print: ask for less (a shallower listing)`)
      onStdout?.(chunk)
      out.push(chunk)
    } else if (event.type === 'stderr' && errBytes < maxHelperStderrBytes) {
      const chunk = Buffer.from(event.data, 'base64').subarray(0, maxHelperStderrBytes - errBytes)
      errBytes += chunk.length
      err.push(chunk)
    } else if (event.type === 'end') return { exitCode: event.result.exitCode, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }
  }
  throw new SandstormError('canceled', 'the helper command was not followed to its end')
}

/** A bound in words: MiB, or KiB under one MiB. */
function sizeText(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${Math.floor(bytes / 1024 / 1024)} MiB` : `${Math.floor(bytes / 1024)} KiB`
}

const stderrCodes: [RegExp, ErrorCode, string][] = [
  [/No such file or directory/i, 'not_found', 'no such file or directory'],
  [/File exists/i, 'already_exists', 'already exists'],
  [/Directory not empty/i, 'already_exists', 'directory is not empty'],
  [/Permission denied|Operation not permitted/i, 'permission_denied', 'permission denied'],
  [/Not a directory/i, 'invalid_argument', 'not a directory'],
  [/Is a directory/i, 'invalid_argument', 'is a directory (expected a file)'],
  [/Read-only file system/i, 'permission_denied', 'read-only file system'],
  [/No space left|Disk quota/i, 'resource_exhausted', 'no space left in the sandbox'],
  [/File name too long/i, 'invalid_argument', 'file name too long'],
  [/file metadata needs perl/i, 'failed_precondition', 'file metadata needs perl in the sandbox (Debian\'s perl-base)'],
]

/** A coded error for a failed helper, from the words of its stderr. */
export function helperError(op: string, path: string, stderr: string): SandstormError {
  const found = stderrCodes.find(([re]) => re.test(stderr))
  if (found) return new SandstormError(found[1], `${op} ${path}: ${found[2]}`)
  return new SandstormError('internal', `${op} ${path} failed: ${stderr.trim().split('\n').pop() ?? 'unknown error'}`)
}

/** Runs a helper and throws a coded error unless it exits 0. */
export async function runChecked(agent: AgentApi, id: string, op: string, path: string, argv: string[], options: RunOptions = {}): Promise<Buffer> {
  const result = await runInSandbox(agent, id, argv, options).catch((err: unknown) => {
    if (err instanceof SandstormError && err.code === 'resource_exhausted') throw new SandstormError(err.code, `${op} ${path}: ${err.message}`)
    throw err
  })
  if (result.exitCode !== 0) throw helperError(op, path, result.stderr)
  return result.stdout
}
