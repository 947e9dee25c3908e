import type { ProcessResult } from './wire/index.js'

/** How a command ended, with everything it printed (decoded as UTF-8). */
export interface CommandResult {
  /** Pid of the command inside the sandbox. */
  pid: number
  /** Exit status; 128 + the signal's number for a command ended by a signal. */
  exitCode: number
  /** The signal Sandstorm sent to end it (timeout, kill, OOM), or null. */
  signal: string | null
  /** The command's own `timeoutMs` passed and it was killed. */
  timedOut: boolean
  /** It was killed for using more memory than the sandbox has. */
  oomKilled: boolean
  /** The snapshot the sandbox was restored to while the command ran, which killed it; null when none was. */
  restoredTo: string | null
  durationMs: number
  stdout: string
  stderr: string
}

/** Joins the wire result with the collected output. */
export function toCommandResult(pid: number, result: ProcessResult, stdout: string, stderr: string): CommandResult {
  return {
    pid,
    exitCode: result.exitCode,
    signal: result.signal,
    timedOut: result.timedOut,
    oomKilled: result.oomKilled,
    restoredTo: result.restoredTo ?? null,
    durationMs: result.durationMs,
    stdout,
    stderr,
  }
}
