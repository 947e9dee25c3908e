/** Running a command in a sandbox with this process's stdio: output as it comes, stdin passed on. */
import { AbortError, type CommandResult, type Sandbox } from '@sandstorm/sdk'

/** Options of runWithStdio. */
export interface StdioRunOptions {
  envs?: Record<string, string>
  cwd?: string
  user?: string
  timeoutMs?: number
  /** Aborting kills the command. */
  signal: AbortSignal
  /** Pass our stdin to the command. @default !process.stdin.isTTY */
  stdin?: boolean
}

/**
 * Runs `argv` (no shell) with its stdout and stderr written raw to ours. Resolves with the result
 * (its `stdout` and `stderr` empty: the output is not kept, or `exec ID -- cat /big` would hold
 * all of it); throws CommandExitError or TimeoutError as the SDK does.
 */
export async function runWithStdio(sbx: Sandbox, argv: string[], options: StdioRunOptions): Promise<CommandResult> {
  const base = {
    envs: options.envs,
    cwd: options.cwd,
    user: options.user,
    timeoutMs: options.timeoutMs,
    onStdoutBytes: (b: Uint8Array) => void process.stdout.write(b),
    onStderrBytes: (b: Uint8Array) => void process.stderr.write(b),
    keepOutput: false,
  }
  if (!(options.stdin ?? !process.stdin.isTTY)) {
    return sbx.commands.run(argv, { ...base, signal: options.signal })
  }
  // Stdin is streamed to a background command, which we then follow like a foreground one.
  const handle = await sbx.commands.run(argv, { ...base, background: true, keepStdin: true, signal: options.signal })
  let finished = false
  const pump = async (): Promise<void> => {
    try {
      for await (const chunk of process.stdin) {
        if (finished) return
        await handle.sendStdin(chunk as Buffer)
      }
      if (!finished) await handle.closeStdin()
    } catch {
      // The command ended (and its stdin with it) before we had passed everything on.
    }
  }
  void pump()
  const onAbort = (): void => {
    handle.kill().catch(() => undefined)
    handle.disconnect()
  }
  options.signal.addEventListener('abort', onAbort, { once: true })
  try {
    return await handle.wait()
  } catch (err) {
    if (options.signal.aborted) throw new AbortError('the command was interrupted and killed', { cause: err })
    throw err
  } finally {
    finished = true
    options.signal.removeEventListener('abort', onAbort)
    process.stdin.destroy()
  }
}
