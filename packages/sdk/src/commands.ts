/** `sandbox.commands`: run commands, foreground or background, and manage running processes. */
import type { ExecEvent, ExecRequest, ProcessInfo } from './wire/index.js'
import { base64Of } from './bytes.js'
import { CommandHandle, type ProcessSignal } from './command-handle.js'
import { toCommandResult, type CommandResult } from './command-result.js'
import type { ConnectionOptions } from './connection.js'
import { AbortError, NotFoundError, UnavailableError } from './errors.js'
import { checkCommandResult, consumeExecEvents, createOutputSink, type OutputHandlers } from './exec-stream.js'
import { parseNdjson } from './ndjson.js'
import type { SandboxContext } from './sandbox-context.js'

/** Options of `commands.run`. */
export interface CommandRunOptions extends ConnectionOptions, OutputHandlers {
  /** Environment variables for this command, over the sandbox's. */
  envs?: Record<string, string>
  /** Working directory. @default the user's home, as the server decides */
  cwd?: string
  /** User to run as: a name or a uid. @default 'root' */
  user?: string
  /** Bytes for the command's stdin; stdin is then closed unless `keepStdin` is set. */
  stdin?: string | Uint8Array
  /** Keep stdin open for `sendStdin()`. @default false */
  keepStdin?: boolean
  /** The command's own timeout: the server kills its process tree after this long. @default no limit */
  timeoutMs?: number
  /** Return a CommandHandle as soon as the command has started. @default false */
  background?: boolean
}

/** Options of `commands.connect`. */
export interface CommandConnectOptions extends ConnectionOptions, OutputHandlers {}

/** Commands of one sandbox. */
export class Commands {
  /** @internal Made by Sandbox. */
  constructor(private readonly ctx: SandboxContext) {}

  /**
   * Runs a command: a string goes to `/bin/sh -c`, an array is run as it is. In the foreground it
   * resolves with the result and throws CommandExitError on a non-zero exit (TimeoutError if its
   * `timeoutMs` passed); aborting `signal` kills it. With `background: true` it returns a handle.
   */
  run(cmd: string | string[], options: CommandRunOptions & { background: true }): Promise<CommandHandle>
  run(cmd: string | string[], options?: CommandRunOptions & { background?: false }): Promise<CommandResult>
  run(cmd: string | string[], options?: CommandRunOptions): Promise<CommandResult | CommandHandle>
  async run(cmd: string | string[], options: CommandRunOptions = {}): Promise<CommandResult | CommandHandle> {
    const body = execBodyOf(cmd, options)
    if (options.background) {
      const { pid } = await this.ctx.clientFor(options).json<{ pid: number }>({
        method: 'POST',
        path: this.ctx.path('/exec'),
        json: { ...body, background: true },
        signal: options.signal,
      })
      return new CommandHandle(pid, this.control(options), options)
    }
    return this.runForeground(body, options)
  }

  /** Processes started in this sandbox, running or ended. */
  list(options: ConnectionOptions = {}): Promise<ProcessInfo[]> {
    return this.ctx.clientFor(options).json<ProcessInfo[]>({ method: 'GET', path: this.ctx.path('/processes'), signal: options.signal })
  }

  /** Sends a signal to a process's tree; resolves false if there is no such process. @default 'SIGKILL' */
  async kill(pid: number, signal: ProcessSignal = 'SIGKILL', options: ConnectionOptions = {}): Promise<boolean> {
    try {
      await this.ctx.clientFor(options).send({
        method: 'POST',
        path: this.ctx.path(`/processes/${pid}/signal`),
        json: { signal },
        signal: options.signal,
      })
      return true
    } catch (err) {
      if (err instanceof NotFoundError) return false
      throw err
    }
  }

  /** Writes to a process's stdin (started with `keepStdin: true`). */
  async sendStdin(pid: number, data: string | Uint8Array, options: ConnectionOptions = {}): Promise<void> {
    await this.stdin(pid, { dataBase64: base64Of(data) }, options)
  }

  /** Closes a process's stdin. */
  async closeStdin(pid: number, options: ConnectionOptions = {}): Promise<void> {
    await this.stdin(pid, { close: true }, options)
  }

  /** Attaches to a running (or ended) process: its kept output is replayed to the callbacks, then live output. */
  async connect(pid: number, options: CommandConnectOptions = {}): Promise<CommandHandle> {
    return new CommandHandle(pid, this.control(options), options)
  }

  private async stdin(pid: number, json: { dataBase64?: string; close?: boolean }, options: ConnectionOptions): Promise<void> {
    await this.ctx.clientFor(options).send({ method: 'POST', path: this.ctx.path(`/processes/${pid}/stdin`), json, signal: options.signal })
  }

  private async openEvents(pid: number, signal: AbortSignal, options: ConnectionOptions): Promise<AsyncIterable<ExecEvent>> {
    const chunks = await this.ctx.clientFor(options).chunks({ method: 'GET', path: this.ctx.path(`/processes/${pid}/events`), signal })
    return parseNdjson<ExecEvent>(chunks)
  }

  /** What a handle may do, bound to the connection the handle was made with. */
  private control(options: ConnectionOptions): ConstructorParameters<typeof CommandHandle>[1] {
    const conn: ConnectionOptions = { apiKey: options.apiKey, apiUrl: options.apiUrl, requestTimeoutMs: options.requestTimeoutMs }
    return {
      events: (pid, signal) => this.openEvents(pid, options.signal ? AbortSignal.any([signal, options.signal]) : signal, conn),
      kill: (pid, signal) => this.kill(pid, signal, conn),
      sendStdin: (pid, data) => this.sendStdin(pid, data, conn),
      closeStdin: (pid) => this.closeStdin(pid, conn),
    }
  }

  private async runForeground(body: ExecRequest, options: CommandRunOptions): Promise<CommandResult> {
    const caller = options.signal
    if (caller?.aborted) throw new AbortError('the command was aborted before it started', { cause: caller.reason })
    const client = this.ctx.clientFor(options)
    // The caller's signal is not handed to fetch: aborting must first kill the process, and its
    // pid only comes with the stream's first event.
    const stream = new AbortController()
    let pid: number | undefined
    let aborted = false
    // Once the caller has its AbortError, output still in flight is not handed to its callbacks.
    // A callback not given stays undefined: the sink decodes no text that nobody takes.
    const unlessAborted = <T>(fn: ((data: T) => void) | undefined): ((data: T) => void) | undefined =>
      fn &&
      ((data: T): void => {
        if (!aborted) fn(data)
      })
    const sink = createOutputSink({
      onStdout: unlessAborted(options.onStdout),
      onStderr: unlessAborted(options.onStderr),
      onStdoutBytes: unlessAborted(options.onStdoutBytes),
      onStderrBytes: unlessAborted(options.onStderrBytes),
      keepOutput: options.keepOutput,
    })
    const killAndStop = (): void => {
      if (pid === undefined) return
      const kill = client.send({
        method: 'POST',
        path: this.ctx.path(`/processes/${pid}/signal`),
        json: { signal: 'SIGKILL' },
      })
      kill.catch(() => undefined).finally(() => stream.abort())
    }

    const work = (async (): Promise<CommandResult> => {
      const bytes = await client.chunks({ method: 'POST', path: this.ctx.path('/exec'), json: body, signal: stream.signal })
      const outcome = await consumeExecEvents(parseNdjson<ExecEvent>(bytes), sink, (started) => {
        pid = started
        if (aborted) killAndStop()
      })
      if (outcome.pid === undefined || !outcome.result) {
        const which = outcome.pid === undefined ? '' : ` (pid ${outcome.pid}; follow it with commands.connect(${outcome.pid}))`
        throw new UnavailableError('unavailable', `the output stream of the command ended before the command did${which}`)
      }
      return toCommandResult(outcome.pid, outcome.result, sink.stdout, sink.stderr)
    })()
    if (!caller) return checkCommandResult(await work)

    let onAbort: () => void = () => undefined
    const abortedP = new Promise<never>((_, reject) => {
      onAbort = () => {
        aborted = true
        // Without a pid yet, the start event (which comes first) kills it as soon as it arrives.
        killAndStop()
        reject(new AbortError('the command was aborted and killed', { cause: caller.reason }))
      }
      caller.addEventListener('abort', onAbort, { once: true })
    })
    work.catch(() => undefined)
    try {
      return checkCommandResult(await Promise.race([work, abortedP]))
    } finally {
      caller.removeEventListener('abort', onAbort)
    }
  }
}

/** The wire body of a command. */
function execBodyOf(cmd: string | string[], o: CommandRunOptions): ExecRequest {
  const body: ExecRequest = typeof cmd === 'string' ? { cmd } : { argv: cmd }
  if (o.envs) body.env = o.envs
  if (o.cwd !== undefined) body.cwd = o.cwd
  if (o.user !== undefined) body.user = o.user
  if (o.stdin !== undefined) body.stdinBase64 = base64Of(o.stdin)
  if (o.keepStdin) body.keepStdin = true
  if (o.timeoutMs !== undefined) body.timeoutMs = o.timeoutMs
  return body
}
