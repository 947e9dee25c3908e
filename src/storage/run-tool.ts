/** Running the short host tools of the layer store (mount, umount, cp, btrfs) to their end. */
import { execFile, type ExecFileException } from 'node:child_process'

/** How a tool run ended. */
export interface ToolResult {
  /** The exit code, or null when it did not exit by itself (killed, or not started). */
  exitCode: number | null
  stdout: string
  stderr: string
  /** Stopped by the caller's signal. */
  isCanceled: boolean
  /** Why it could not run or was killed (ENOENT, a signal), when that is so. */
  failure?: string
}

/** Output kept per stream; the tools here print a few lines. */
const maxOutputBytes = 4 * 1024 * 1024

/**
 * Runs `file` with `args` (no shell) and resolves how it ended; never rejects. Plain `execFile`
 * rather than execa: these runs sit on the snapshot, fork and restore paths, and execa measured
 * here about twice the wall time and twice the node CPU of `execFile` per run (8 ms against 3.5 ms
 * for `true`). stdin is closed at once.
 */
export function runTool(file: string, args: string[], options: { signal?: AbortSignal } = {}): Promise<ToolResult> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { signal: options.signal, maxBuffer: maxOutputBytes, encoding: 'utf8' }, (err: ExecFileException | null, stdout, stderr) => {
      if (!err) return resolve({ exitCode: 0, stdout, stderr, isCanceled: false })
      const exitCode = typeof err.code === 'number' ? err.code : null
      const isCanceled = options.signal?.aborted === true
      resolve({ exitCode, stdout, stderr, isCanceled, ...(exitCode === null ? { failure: err.signal ? `killed by ${err.signal}` : err.message } : {}) })
    })
    child.stdin?.end()
  })
}

/** The first lines of a tool's complaint, for an error message. */
export function complaintOf(result: ToolResult): string {
  const text = result.stderr.trim() || result.failure || `exit ${result.exitCode}`
  return text.split('\n').slice(0, 3).join('; ')
}
