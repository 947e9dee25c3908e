/**
 * Terminals on the wire: the size schema of exec's `pty` and of a resize, the query of the
 * WebSocket terminal route, and the messages of its protocol (`sandstorm-pty.v1`). Shared by the
 * server, the SDK, the CLI and the web console.
 */
import { z } from 'zod'

/** Bounds of a terminal's size in character cells. */
export const terminalLimits = {
  /**
   * A terminal with no column or no row is too small: nothing can be drawn on it (a pane shrunk to
   * nothing, a stdout that is not a terminal reports 0), so 0 is refused rather than passed on.
   */
  minCells: 1,
  /** Far beyond any screen; a bound keeps a hostile size from reaching a program's buffers. */
  maxCells: 1000,
} as const

const cells = z.number().int().min(terminalLimits.minCells).max(terminalLimits.maxCells)

/** A terminal's size: exec's `pty`, and the body of POST /v1/sandboxes/:id/processes/:pid/resize. */
export const terminalSize = z.strictObject({ cols: cells, rows: cells })
/** A terminal's size in character cells. */
export type TerminalSizeInput = z.input<typeof terminalSize>

/** The WebSocket protocol of GET /v1/sandboxes/:id/pty; the server answers with it. */
export const ptyProtocol = 'sandstorm-pty.v1'
/**
 * Browsers cannot set headers on a WebSocket: a client may instead offer the subprotocol
 * `sandstorm-key.<base64url of the API key>` beside ptyProtocol.
 */
export const ptyKeyProtocolPrefix = 'sandstorm-key.'

/** The API key as a subprotocol a browser can offer (base64url has only token characters). */
export function ptyKeyProtocol(apiKey: string): string {
  const bytes = new TextEncoder().encode(apiKey)
  let binary = ''
  for (const b of bytes) binary += String.fromCharCode(b)
  return ptyKeyProtocolPrefix + btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

/** A size in a query string: digits, read as the number they spell. */
const cellsInQuery = z.coerce.number().int().min(terminalLimits.minCells).max(terminalLimits.maxCells)

/**
 * The query of GET /v1/sandboxes/:id/pty. `cmd` and `env` repeat, one argument or variable each
 * (without `cmd`: the user's login shell, bash where the sandbox has it, else sh).
 */
export const ptyQuery = z.strictObject({
  cols: cellsInQuery,
  rows: cellsInQuery,
  cmd: z.array(z.string().refine((v) => !v.includes('\0'), 'an argument without NUL bytes')).min(1).optional(),
  user: z.string().regex(/^[a-z_][a-z0-9_-]*$|^[0-9]+$/, 'a user name or uid').optional(),
  cwd: z
    .string()
    .max(4096)
    .refine((p) => p.startsWith('/') && !p.includes('\0'), 'an absolute path (starting with /)')
    .optional(),
  /** Environment variables, repeatable, each `NAME=value`. */
  env: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*=[^\0]*$/, 'NAME=value without NUL bytes')).optional(),
  /** TERM of the command (over an `env` TERM). @default 'xterm-256color' */
  term: z.string().regex(/^[A-Za-z0-9._+-]{1,64}$/, 'a terminal type such as xterm-256color').optional(),
})
/** The query of the terminal route, as parsed. */
export type PtyQuery = z.output<typeof ptyQuery>

/** What a terminal runs when no command is given: a login shell, bash if the sandbox has it. */
export const defaultShellArgv = ['/bin/sh', '-c', 'command -v bash >/dev/null 2>&1 && exec bash -l || exec sh -l']

/** TERM of a terminal whose client names none. */
export const defaultTerm = 'xterm-256color'

/** A text message from the server (binary messages are the terminal's output). */
export type PtyServerMessage =
  | { type: 'start'; pid: number }
  /** The command ended; the last message before a normal close. */
  | { type: 'exit'; exitCode: number; signal?: string }
  /** The session cannot go on (the sandbox stopped, the agent is gone); the socket closes after it. */
  | { type: 'error'; code: string; message: string }

/** A text message from the client (binary messages are input bytes). */
export const ptyClientMessage = z.discriminatedUnion('type', [z.strictObject({ type: z.literal('resize'), cols: cells, rows: cells })])
/** A text message from the client. */
export type PtyClientMessage = z.input<typeof ptyClientMessage>
