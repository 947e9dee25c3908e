/** Reading a stream of ExecEvents: decoding output for the callbacks and keeping it for the result. */
import type { ExecEvent, ProcessResult } from './wire/index.js'
import { bytesOfBase64 } from './bytes.js'
import type { CommandResult } from './command-result.js'
import { CommandExitError, TimeoutError } from './errors.js'

/** Callbacks for a command's output. */
export interface OutputHandlers {
  /** Each piece of stdout, decoded as UTF-8 (a character split across pieces is held back until whole). */
  onStdout?: (data: string) => void
  /** Each piece of stderr, decoded as UTF-8. */
  onStderr?: (data: string) => void
  /** Each piece of stdout as raw bytes, for binary output. */
  onStdoutBytes?: (data: Uint8Array) => void
  /** Each piece of stderr as raw bytes. */
  onStderrBytes?: (data: Uint8Array) => void
  /**
   * Keep the output for the result's (and a CommandExitError's) `stdout` and `stderr`. Turn it off
   * when the callbacks take the output: a kept string grows with everything the command prints, and
   * past about 512 MiB (V8's longest string) it cannot grow at all. Off, both are `''`.
   * @default true
   */
  keepOutput?: boolean
}

/** Collects a command's output and hands it to the callbacks as it comes. */
export interface OutputSink {
  readonly stdout: string
  readonly stderr: string
  push(stream: 'stdout' | 'stderr', base64: string): void
  /** Ends both decoders, flushing any incomplete character. Safe to call twice. */
  flush(): void
}

/** A sink over the given callbacks; with `keepOutput: false` it holds no output, and decodes only for onStdout and onStderr. */
export function createOutputSink(handlers: OutputHandlers = {}): OutputSink {
  const keep = handlers.keepOutput ?? true
  const out = { stdout: '', stderr: '' }
  const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() }
  const text = { stdout: handlers.onStdout, stderr: handlers.onStderr }
  const bytes = { stdout: handlers.onStdoutBytes, stderr: handlers.onStderrBytes }
  const decoded = { stdout: keep || text.stdout !== undefined, stderr: keep || text.stderr !== undefined }
  let flushed = false
  const emit = (stream: 'stdout' | 'stderr', s: string): void => {
    if (s === '') return
    if (keep) out[stream] += s
    text[stream]?.(s)
  }
  return {
    get stdout() {
      return out.stdout
    },
    get stderr() {
      return out.stderr
    },
    push(stream, base64) {
      const chunk = bytesOfBase64(base64)
      if (chunk.length === 0) return
      bytes[stream]?.(chunk)
      if (decoded[stream]) emit(stream, decoders[stream].decode(chunk, { stream: true }))
    },
    flush() {
      if (flushed) return
      flushed = true
      emit('stdout', decoders.stdout.decode())
      emit('stderr', decoders.stderr.decode())
    },
  }
}

/** What an event stream told: the pid once started, and the result if it got as far as `end`. */
export interface ExecOutcome {
  pid: number | undefined
  result: ProcessResult | undefined
}

/**
 * Feeds events into the sink until `end`, or until the stream ends without one (a lost
 * connection), in which case `result` is undefined. The server ends the stream right after `end`:
 * it is read on to its close (anything after `end` is ignored) rather than left, since leaving
 * cancels the body, which aborts the fetch under it: an error made and thrown per command.
 */
export async function consumeExecEvents(
  events: AsyncIterable<ExecEvent>,
  sink: OutputSink,
  onStart?: (pid: number) => void,
): Promise<ExecOutcome> {
  const outcome: ExecOutcome = { pid: undefined, result: undefined }
  try {
    await readEvents(events, sink, outcome, onStart)
  } catch (err) {
    // A stream cut after its `end` still told the result.
    if (!outcome.result) throw err
  }
  sink.flush()
  return outcome
}

async function readEvents(events: AsyncIterable<ExecEvent>, sink: OutputSink, outcome: ExecOutcome, onStart?: (pid: number) => void): Promise<void> {
  for await (const event of events) {
    if (outcome.result) continue
    switch (event.type) {
      case 'start':
        outcome.pid = event.pid
        onStart?.(event.pid)
        break
      case 'stdout':
      case 'stderr':
        sink.push(event.type, event.data)
        break
      case 'end':
        outcome.result = event.result
        sink.flush()
        break
      default:
        // An event type from a newer server: skip it rather than fail.
        break
    }
  }
}

/** Returns the result of a command that succeeded; throws TimeoutError or CommandExitError otherwise. */
export function checkCommandResult(result: CommandResult): CommandResult {
  if (result.timedOut) {
    const how = `${result.signal ?? 'SIGKILL'} after ${result.durationMs} ms`
    throw new TimeoutError(`the command ran past its timeoutMs and was killed (${how})`, result)
  }
  if (result.exitCode !== 0) throw new CommandExitError(result)
  return result
}
