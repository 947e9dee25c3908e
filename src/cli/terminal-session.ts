/**
 * A terminal in a sandbox on this process's own terminal: `shell` and `exec -it`. Keys go to the
 * sandbox raw (Ctrl-C, Ctrl-D, Ctrl-Z, arrows: the program's own terminal turns them into signals
 * and ends of file), output is written raw, each SIGWINCH is a resize, and the terminal is put
 * back (cooked mode, cursor shown) however the session ends. One WebSocket to the server
 * (`sandstorm-pty.v1`); closing it hangs the command up, so nothing is left running.
 */
import WebSocket from 'ws'
import { InvalidArgumentError, terminalLimits, type Sandbox } from '@sandstorm/sdk'
// Not the shared index: this module is loaded with import(), and esbuild keeps all of what such a
// module imports, so the index would bring every wire schema (and zod) into the CLI's bundle.
import { httpStatusOf, SandstormError } from '../shared/errors.js'
import type { ErrorCode, PtyServerMessage } from '../shared/index.js'

/** What to run on the terminal. */
export interface TerminalSessionOptions {
  /** @default the user's login shell */
  cmd?: string[]
  user?: string
  cwd?: string
  envs?: Record<string, string>
  /** Pass keys on (`-i`); without it the terminal only shows output, and Ctrl-C here ends the command. */
  input: boolean
}

/** Signals that end a session from outside; the command is hung up and the CLI exits 128 + n. */
const endingSignals = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const

/** Runs a command on a terminal; resolves with its exit code. */
export async function runTerminalSession(sbx: Sandbox, options: TerminalSessionOptions): Promise<number> {
  const stdin = process.stdin
  const stdout = process.stdout
  if (!stdin.isTTY) throw new InvalidArgumentError('invalid_argument', 'the input device is not a TTY: a terminal needs one on stdin (leave out -t, or run it in a terminal)')
  const size = sizeOf(stdout)
  const { url, protocols } = sbx.pty.socket({ ...size, cmd: options.cmd, user: options.user, cwd: options.cwd, envs: options.envs, term: process.env.TERM || undefined })
  const ws = new WebSocket(url, protocols, { perMessageDeflate: false })
  const restore = terminalRestorer(stdin, stdout)
  let exitCode: number | undefined
  let failure: Error | undefined
  let endedBy: keyof typeof endingSignals | undefined

  const onSignal = (name: keyof typeof endingSignals): void => {
    // A second signal while the first is handled: do not wait for the server.
    if (endedBy) {
      restore(true)
      process.exit(128 + endingSignals[name])
    }
    endedBy = name
    ws.close(1000, `the client got ${name}`)
  }
  const handlers = Object.keys(endingSignals).map((name) => {
    const handler = (): void => onSignal(name as keyof typeof endingSignals)
    process.on(name as NodeJS.Signals, handler)
    return [name, handler] as const
  })
  // The last resort: whatever exits the process puts the terminal back.
  const onExit = (): void => restore(true)
  process.on('exit', onExit)

  // Attached before the socket opens: the start and the first output can come with the handshake's answer.
  const closed = new Promise<void>((resolve) => {
    ws.on('message', (data, isBinary) => {
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer)
      if (isBinary) {
        // The terminal is slower than the sandbox: stop reading until it has caught up.
        if (!stdout.write(bytes)) {
          ws.pause()
          stdout.once('drain', () => ws.resume())
        }
        return
      }
      const message = parseMessage(bytes)
      if (message?.type === 'exit') exitCode = message.exitCode
      else if (message?.type === 'error') failure = new SandstormError(knownCode(message.code), message.message)
    })
    ws.on('close', (code) => {
      if (code === 1001) failure ??= new SandstormError('unavailable', 'the server shut down; the command on the terminal was hung up')
      resolve()
    })
  })

  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('unexpected-response', (_req, res) => {
        let text = ''
        res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
        res.on('end', () => reject(errorOfAnswer(res.statusCode ?? 0, text)))
        res.on('error', reject)
      })
      ws.once('error', (err) => reject(new SandstormError('unavailable', `could not reach the server at ${new URL(url).host}: ${err.message}`)))
      ws.once('open', () => resolve())
    })

    const onResize = (): void => {
      const now = sizeOf(stdout, false)
      if (now && ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'resize', ...now }))
    }
    const onInput = (chunk: Buffer): void => {
      if (ws.readyState === ws.OPEN) ws.send(chunk, { binary: true })
    }
    if (options.input) {
      stdin.setRawMode(true)
      stdin.on('data', onInput)
      stdin.resume()
    }
    stdout.on('resize', onResize)

    ws.on('error', (err) => (failure ??= new SandstormError('unavailable', `the connection to the server broke: ${err.message}`)))
    await closed
    stdout.off('resize', onResize)
    stdin.off('data', onInput)
  } finally {
    for (const [name, handler] of handlers) process.off(name, handler)
    // An end that was not the program's own may leave its screen modes behind.
    restore(exitCode === undefined)
    process.off('exit', onExit)
    ws.terminate()
  }
  if (endedBy) return 128 + endingSignals[endedBy]
  if (exitCode !== undefined && !failure) return exitCode
  throw failure ?? new SandstormError('unavailable', 'the connection to the server was lost before the command ended')
}

/** The terminal's size; a terminal with no room at all is refused, as the server would. */
function sizeOf(stdout: NodeJS.WriteStream): { cols: number; rows: number }
function sizeOf(stdout: NodeJS.WriteStream, strict: false): { cols: number; rows: number } | undefined
function sizeOf(stdout: NodeJS.WriteStream, strict = true): { cols: number; rows: number } | undefined {
  // Output redirected: the program still gets a terminal, of the usual size.
  if (!stdout.isTTY) return { cols: 80, rows: 24 }
  const cols = Math.min(stdout.columns || 0, terminalLimits.maxCells)
  const rows = Math.min(stdout.rows || 0, terminalLimits.maxCells)
  if (cols >= terminalLimits.minCells && rows >= terminalLimits.minCells) return { cols, rows }
  if (!strict) return undefined
  throw new InvalidArgumentError('invalid_argument', `the terminal is too small (${cols} columns, ${rows} rows): expected at least ${terminalLimits.minCells} of each`)
}

/** Puts the terminal back as it was; safe to call twice. `screen` also leaves modes a killed program may have left on. */
function terminalRestorer(stdin: NodeJS.ReadStream, stdout: NodeJS.WriteStream): (screen: boolean) => void {
  let done = false
  return (screen) => {
    if (done) return
    done = true
    if (stdin.isTTY && stdin.isRaw) stdin.setRawMode(false)
    stdin.pause()
    if (!stdout.isTTY) return
    // Cursor shown always; after an end that was not the program's own, also the alternate
    // screen, application keys and bracketed paste off, and a fresh line for what we print next.
    const reset = screen ? '\x1b[?1049l\x1b[?1l\x1b>\x1b[?2004l\x1b[0m\r\n' : ''
    try {
      stdout.write(`${reset}\x1b[?25h`)
    } catch {
      // The terminal is gone (a hang-up): nothing to put back.
    }
  }
}

/** The error of an answer refusing the upgrade (`{ code, message }`). */
function errorOfAnswer(status: number, text: string): SandstormError {
  try {
    const body = JSON.parse(text) as { code?: unknown; message?: unknown }
    if (typeof body.message === 'string') return new SandstormError(knownCode(body.code), body.message)
  } catch {
    // Not ours: a proxy answered.
  }
  return new SandstormError(status === 401 ? 'unauthenticated' : status === 404 ? 'not_found' : 'unavailable', `the server answered ${status} to the terminal request: ${text.trim().slice(0, 200)}`)
}

function parseMessage(bytes: Buffer): PtyServerMessage | undefined {
  try {
    return JSON.parse(bytes.toString('utf8')) as PtyServerMessage
  } catch {
    return undefined
  }
}

function knownCode(code: unknown): ErrorCode {
  return typeof code === 'string' && Object.hasOwn(httpStatusOf, code) ? (code as ErrorCode) : 'internal'
}
