/**
 * `sandbox.pty`: commands on a terminal made inside the sandbox, shaped like E2B's `sandbox.pty`.
 * Output streams from an exec with `pty` (NDJSON); input and resizes are POSTs, sent in order.
 * Only fetch and web streams: it runs in browsers too. `socket()` gives what a WebSocket client
 * (xterm.js in a browser, the CLI) needs for the one-connection route instead.
 */
// Values from their zod-free file, not the wire index: a bundle that loads this module lazily keeps all
// that the module imports, and the index would bring every schema (and zod) along.
import { defaultShellArgv, defaultTerm, ptyKeyProtocol, ptyProtocol } from './wire/terminal-protocol.js'
import type { ExecEvent, ExecRequest, ProcessResult } from './wire/index.js'
import { toCommandResult, type CommandResult } from './command-result.js'
import type { ConnectionOptions } from './connection.js'
import { AbortError, NotFoundError, UnavailableError } from './errors.js'
import { checkCommandResult } from './exec-stream.js'
import { parseNdjson } from './ndjson.js'
import type { SandboxContext } from './sandbox-context.js'

/** A terminal's size in character cells (each 1..1000). */
export interface PtySize {
  cols: number
  rows: number
}

/** Options of `pty.create`. */
export interface PtyCreateOptions extends ConnectionOptions, PtySize {
  /** Every piece of the terminal's output, raw (escape sequences included). */
  onData: (data: Uint8Array) => void | Promise<void>
  /** The command and its arguments. @default the user's login shell: bash where the sandbox has it, else sh */
  cmd?: string[]
  /** Environment over the sandbox's; TERM, LANG and LC_ALL default to xterm-256color and C.UTF-8, as E2B's. */
  envs?: Record<string, string>
  /** @default the user's home */
  cwd?: string
  /** A user name or uid. @default 'root' */
  user?: string
  /** The command's own timeout: its whole tree is killed after this long. @default no limit */
  timeoutMs?: number
}

/** Options of `pty.connect`. */
export interface PtyConnectOptions extends ConnectionOptions {
  /** The terminal's output: what it kept so far, then live output. */
  onData: (data: Uint8Array) => void | Promise<void>
}

/** Options of `pty.socket`: the query of the WebSocket route. */
export interface PtySocketOptions extends PtySize {
  cmd?: string[]
  /** Environment variables over the sandbox's. */
  envs?: Record<string, string>
  cwd?: string
  user?: string
  /** @default 'xterm-256color' */
  term?: string
  /** @default the sandbox's connection */
  apiKey?: string
  apiUrl?: string
}

/** Where a WebSocket client connects, and the subprotocols it offers (`sandstorm-pty.v1` and the key). */
export interface PtySocketRequest {
  url: string
  protocols: string[]
}

/** A command running on a terminal. */
export class PtyHandle {
  private readonly stop = new AbortController()

  /** @internal Made by `pty.create` and `pty.connect`. */
  constructor(
    /** Pid of the command inside the sandbox. */
    readonly pid: number,
    private readonly pty: Pty,
    private readonly ended: Promise<ProcessResult>,
    private readonly connection: ConnectionOptions,
  ) {
    // Errors surface through wait(); this only keeps an unwatched one from going unhandled.
    ended.catch(() => undefined)
  }

  /** Waits for the command to end; throws CommandExitError on a non-zero exit (a kill included), as E2B's. */
  async wait(): Promise<CommandResult> {
    return checkCommandResult(toCommandResult(this.pid, await this.ended, '', ''))
  }

  /** Types bytes (keys, escape sequences, Ctrl-C as 0x03) into the terminal. */
  sendInput(data: Uint8Array | string): Promise<void> {
    return this.pty.sendInput(this.pid, data, this.connection)
  }

  /** Resizes the terminal; the program on it gets SIGWINCH. */
  resize(size: PtySize): Promise<void> {
    return this.pty.resize(this.pid, size, this.connection)
  }

  /** Kills the command's whole tree; false if it was not found. */
  kill(): Promise<boolean> {
    return this.pty.kill(this.pid, this.connection)
  }

  /** Stops reading the output; the command keeps running (`pty.connect(pid)` reads it again). Safe to call twice. */
  disconnect(): void {
    this.stop.abort(new AbortError(`stopped following the terminal of process ${this.pid}`))
  }

  /** @internal The signal that stops the output stream. */
  get stopSignal(): AbortSignal {
    return this.stop.signal
  }
}

/** Terminals of one sandbox. */
export class Pty {
  /** Input still being sent, per pid: keys must arrive in the order they were typed. */
  private readonly inputs = new Map<number, Promise<unknown>>()

  /** @internal Made by Sandbox. */
  constructor(private readonly ctx: SandboxContext) {}

  /** Starts a command (by default a login shell) on a new terminal of `cols` x `rows`; resolves once it runs. */
  async create(options: PtyCreateOptions): Promise<PtyHandle> {
    const envs = { TERM: defaultTerm, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', ...options.envs }
    const body: ExecRequest = { argv: options.cmd ?? defaultShellArgv, env: envs, pty: { cols: options.cols, rows: options.rows } }
    if (options.cwd !== undefined) body.cwd = options.cwd
    if (options.user !== undefined) body.user = options.user
    if (options.timeoutMs !== undefined) body.timeoutMs = options.timeoutMs
    const stream = new AbortController()
    const bytes = await this.ctx.clientFor(options).stream({ method: 'POST', path: this.ctx.path('/exec'), json: body, signal: AbortSignal.any([stream.signal, ...(options.signal ? [options.signal] : [])]) })
    return this.handleOver(parseNdjson<ExecEvent>(bytes), stream, options)
  }

  /** Attaches to a running terminal: its kept output, then live output. */
  async connect(pid: number, options: PtyConnectOptions): Promise<PtyHandle> {
    const stream = new AbortController()
    const bytes = await this.ctx.clientFor(options).stream({ method: 'GET', path: this.ctx.path(`/processes/${pid}/events`), signal: stream.signal })
    return this.handleOver(parseNdjson<ExecEvent>(bytes), stream, options)
  }

  /** Types bytes into a terminal; calls on one pid are sent in order. */
  sendInput(pid: number, data: Uint8Array | string, options: ConnectionOptions = {}): Promise<void> {
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data
    return this.inOrder(pid, () => this.ctx.clientFor(options).send({ method: 'POST', path: this.ctx.path(`/processes/${pid}/stdin`), json: { dataBase64: toBase64(bytes) }, signal: options.signal }))
  }

  /** Resizes a terminal (in order with its input); its program gets SIGWINCH. */
  resize(pid: number, size: PtySize, options: ConnectionOptions = {}): Promise<void> {
    return this.inOrder(pid, () => this.ctx.clientFor(options).send({ method: 'POST', path: this.ctx.path(`/processes/${pid}/resize`), json: { cols: size.cols, rows: size.rows }, signal: options.signal }))
  }

  /** Kills a terminal's command and its whole tree (SIGKILL); false if there was no such process. */
  async kill(pid: number, options: ConnectionOptions = {}): Promise<boolean> {
    try {
      await this.ctx.clientFor(options).send({ method: 'POST', path: this.ctx.path(`/processes/${pid}/signal`), json: { signal: 'SIGKILL' }, signal: options.signal })
      return true
    } catch (err) {
      if (err instanceof NotFoundError) return false
      throw err
    }
  }

  /** The URL and subprotocols of the WebSocket terminal route (GET /v1/sandboxes/:id/pty), key included. */
  socket(options: PtySocketOptions): PtySocketRequest {
    const connection = this.ctx.clientFor({ ...(options.apiKey !== undefined ? { apiKey: options.apiKey } : {}), ...(options.apiUrl !== undefined ? { apiUrl: options.apiUrl } : {}) }).connection
    const url = new URL(`${connection.apiUrl}${this.ctx.path('/pty')}`)
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
    url.searchParams.set('cols', String(options.cols))
    url.searchParams.set('rows', String(options.rows))
    for (const arg of options.cmd ?? []) url.searchParams.append('cmd', arg)
    for (const [name, value] of Object.entries(options.envs ?? {})) url.searchParams.append('env', `${name}=${value}`)
    if (options.cwd !== undefined) url.searchParams.set('cwd', options.cwd)
    if (options.user !== undefined) url.searchParams.set('user', options.user)
    if (options.term !== undefined) url.searchParams.set('term', options.term)
    return { url: url.toString(), protocols: [ptyProtocol, ptyKeyProtocol(connection.apiKey())] }
  }

  private inOrder(pid: number, send: () => Promise<void>): Promise<void> {
    const before = this.inputs.get(pid) ?? Promise.resolve()
    const mine = before.catch(() => undefined).then(send)
    this.inputs.set(pid, mine)
    const forget = (): void => {
      if (this.inputs.get(pid) === mine) this.inputs.delete(pid)
    }
    mine.then(forget, forget)
    return mine
  }

  /** Reads the start event, then hands the rest of the stream to onData in the background. */
  private async handleOver(events: AsyncGenerator<ExecEvent>, stream: AbortController, options: { onData: (data: Uint8Array) => void | Promise<void> } & ConnectionOptions): Promise<PtyHandle> {
    const first = await events.next()
    if (first.done || first.value.type !== 'start') {
      stream.abort()
      throw new UnavailableError('unavailable', 'the terminal stream ended before its command started')
    }
    const pid = first.value.pid
    const connection: ConnectionOptions = { apiKey: options.apiKey, apiUrl: options.apiUrl, requestTimeoutMs: options.requestTimeoutMs }
    let handle!: PtyHandle
    const ended = (async (): Promise<ProcessResult> => {
      // Wait for the handle to exist: its disconnect() stops this stream.
      await Promise.resolve()
      handle.stopSignal.addEventListener('abort', () => stream.abort(handle.stopSignal.reason), { once: true })
      try {
        for await (const event of events) {
          if (event.type === 'stdout' || event.type === 'stderr') await options.onData(fromBase64(event.data))
          else if (event.type === 'end') return event.result
        }
      } catch (err) {
        if (handle.stopSignal.aborted) throw new AbortError(`stopped following the terminal of process ${pid}`, { cause: err })
        throw err
      }
      throw new UnavailableError('unavailable', `the output of terminal process ${pid} ended before the process did; follow it again with pty.connect(${pid})`)
    })()
    handle = new PtyHandle(pid, this, ended, connection)
    return handle
  }
}

function toBase64(bytes: Uint8Array): string {
  let binary = ''
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(binary)
}

function fromBase64(text: string): Uint8Array {
  const binary = atob(text)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}
