/**
 * Terminals on the wire: the size schema of exec's `pty` and of a resize, the query of the
 * WebSocket terminal route, and the client's messages; the protocol's names and the server's
 * messages are in terminal-protocol.ts. Shared by the server, the SDK, the CLI and the web console.
 */
import { z } from 'zod'
import { terminalLimits } from './terminal-protocol.js'

const cells = z.number().int().min(terminalLimits.minCells).max(terminalLimits.maxCells)

/** A terminal's size: exec's `pty`, and the body of POST /v1/sandboxes/:id/processes/:pid/resize. */
export const terminalSize = z.strictObject({ cols: cells, rows: cells })
/** A terminal's size in character cells. */
export type TerminalSizeInput = z.input<typeof terminalSize>

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

/** A text message from the client (binary messages are input bytes). */
export const ptyClientMessage = z.discriminatedUnion('type', [z.strictObject({ type: z.literal('resize'), cols: cells, rows: cells })])
/** A text message from the client. */
export type PtyClientMessage = z.input<typeof ptyClientMessage>
