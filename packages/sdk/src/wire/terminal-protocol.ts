/**
 * The terminal protocol's plain values (`sandstorm-pty.v1`): its names, size bounds, defaults and
 * the server's messages. Apart from the schemas in terminal.ts so that a client that only speaks
 * the protocol (the SDK, the web console) brings no zod along.
 */

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

