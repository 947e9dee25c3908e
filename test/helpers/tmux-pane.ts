/**
 * A real terminal for tests: a tmux server of the test's own (its own socket, no config but ours)
 * running one command in a pane of a fixed size, driven with send-keys and read with
 * capture-pane, as a person at a terminal would.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { until } from './until.js'

const run = promisify(execFile)

/** One pane and its tmux server. */
export interface TmuxPane {
  /** Keys by tmux's names (`Enter`, `C-c`, `C-d`, `Escape`, `q`). */
  keys(...keys: string[]): Promise<void>
  /** Text typed literally, then Enter unless `enter` is false. */
  type(text: string, enter?: boolean): Promise<void>
  /** What the pane shows now, with its recent scrollback. */
  screen(): Promise<string>
  /** Waits until the pane shows `text` (or matches it); returns the screen then. */
  until(text: string | RegExp, timeoutMs?: number): Promise<string>
  /** Resizes the window (its programs get SIGWINCH). */
  resize(cols: number, rows: number): Promise<void>
  /** Whether the pane's command has ended. */
  dead(): Promise<boolean>
  /** The pid of the pane's command (on this host). */
  pid(): Promise<number>
  /** Stops the tmux server and removes its files. Safe to call twice. */
  close(): Promise<void>
}

/** Starts `command` (a shell string) in a new detached pane of `cols` x `rows`. */
export async function openPane(command: string, size: { cols: number; rows: number }): Promise<TmuxPane> {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-tmux-'))
  const config = join(dir, 'tmux.conf')
  // The pane stays after its command ends, so that what it showed last can still be read.
  await writeFile(config, 'set -g remain-on-exit on\nset -g history-limit 2000\n')
  const socket = `sandstorm-test-${randomBytes(6).toString('hex')}`
  const tmux = async (...args: string[]): Promise<string> => (await run('tmux', ['-L', socket, '-f', config, ...args])).stdout
  await tmux('new-session', '-d', '-s', 't', '-x', String(size.cols), '-y', String(size.rows), command)
  let closed = false
  const screen = (): Promise<string> => tmux('capture-pane', '-p', '-t', 't', '-S', '-200')
  return {
    keys: async (...keys) => void (await tmux('send-keys', '-t', 't', ...keys)),
    async type(text, enter = true) {
      await tmux('send-keys', '-t', 't', '-l', text)
      if (enter) await tmux('send-keys', '-t', 't', 'Enter')
    },
    screen,
    until: (text, timeoutMs = 30_000) =>
      until(`the pane to show ${String(text)}`, async () => {
        const now = await screen()
        return (typeof text === 'string' ? now.includes(text) : text.test(now)) ? now : undefined
      }, timeoutMs).catch(async (err: unknown) => {
        throw new Error(`${(err as Error).message}\n--- the pane shows:\n${await screen().catch(() => '(gone)')}`)
      }),
    resize: async (cols, rows) => void (await tmux('resize-window', '-t', 't', '-x', String(cols), '-y', String(rows))),
    dead: async () => (await tmux('display-message', '-p', '-t', 't', '#{pane_dead}')).trim() === '1',
    pid: async () => Number((await tmux('display-message', '-p', '-t', 't', '#{pane_pid}')).trim()),
    async close() {
      if (closed) return
      closed = true
      await tmux('kill-server').catch(() => undefined)
      await rm(dir, { recursive: true, force: true })
    },
  }
}
