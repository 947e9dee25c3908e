/** A command that runs in the background: follow its output, wait for it, write to it, kill it. */
import type { ExecEvent, ProcessSignal } from './wire/index.js'
import { toCommandResult, type CommandResult } from './command-result.js'
import { AbortError, UnavailableError } from './errors.js'
import { checkCommandResult, consumeExecEvents, createOutputSink, type OutputHandlers, type OutputSink } from './exec-stream.js'

export type { ProcessSignal }

/** What a handle needs from its sandbox's commands. */
export interface ProcessControl {
  /** Events of a process: kept output, then live output, then `end`. */
  events(pid: number, signal: AbortSignal): Promise<AsyncIterable<ExecEvent>>
  kill(pid: number, signal?: ProcessSignal): Promise<boolean>
  sendStdin(pid: number, data: string | Uint8Array): Promise<void>
  closeStdin(pid: number): Promise<void>
}

/**
 * A started command. Its output is followed (through `/processes/:pid/events`) once `wait()` is
 * called, or at once when output callbacks were given; `disconnect()` stops following without
 * killing it.
 */
export class CommandHandle {
  private readonly sink: OutputSink
  private readonly stop = new AbortController()
  private following: Promise<CommandResult> | undefined

  /** @internal Made by `commands.run({ background: true })` and `commands.connect()`. */
  constructor(
    /** Pid of the command inside the sandbox. */
    readonly pid: number,
    private readonly control: ProcessControl,
    handlers: OutputHandlers = {},
  ) {
    this.sink = createOutputSink(handlers)
    if (handlers.onStdout || handlers.onStderr || handlers.onStdoutBytes || handlers.onStderrBytes) {
      // Errors surface through wait(); this only keeps an unwatched failure from going unhandled.
      this.follow().catch(() => undefined)
    }
  }

  /** Stdout received so far. */
  get stdout(): string {
    return this.sink.stdout
  }

  /** Stderr received so far. */
  get stderr(): string {
    return this.sink.stderr
  }

  /** Waits for the command to end; throws CommandExitError on a non-zero exit, TimeoutError if it timed out. */
  async wait(): Promise<CommandResult> {
    return checkCommandResult(await this.follow())
  }

  /** Sends a signal to the command's process tree. Resolves false if it was not found. @default 'SIGKILL' */
  kill(signal: ProcessSignal = 'SIGKILL'): Promise<boolean> {
    return this.control.kill(this.pid, signal)
  }

  /** Writes to the command's stdin (it must have been started with `keepStdin: true`). */
  sendStdin(data: string | Uint8Array): Promise<void> {
    return this.control.sendStdin(this.pid, data)
  }

  /** Closes the command's stdin, so that it reads end of file. */
  closeStdin(): Promise<void> {
    return this.control.closeStdin(this.pid)
  }

  /** Stops following the output; the command keeps running. Safe to call twice. */
  disconnect(): void {
    this.stop.abort(new AbortError(`stopped following process ${this.pid}`))
  }

  private follow(): Promise<CommandResult> {
    this.following ??= (async () => {
      const events = await this.control.events(this.pid, this.stop.signal)
      const { result } = await consumeExecEvents(events, this.sink)
      if (!result) {
        throw new UnavailableError('unavailable', `the output stream of process ${this.pid} ended before the process did; follow it again with commands.connect(${this.pid})`)
      }
      return toCommandResult(this.pid, result, this.sink.stdout, this.sink.stderr)
    })()
    return this.following
  }
}
