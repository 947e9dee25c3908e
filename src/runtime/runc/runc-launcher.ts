/**
 * The agent's side of native/runc-launcher.c: a small resident process that starts each `runc run`
 * in the agent's place. Node forks the whole agent for a child, which blocks its event loop (2 to
 * 6 ms for an agent of 120 MiB, more as it grows) and with it every sandbox's commands; the
 * launcher is forked once, and each runc forks from it. Started on first use and again after it
 * died; while idle it does not keep the agent's process alive.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { holdProcessOpen, SandstormError, type CallOptions } from '../../shared/index.js'

/** One program to start: its fds 3 and 4 and its stderr, as the launcher sets them up. */
export interface LaunchRequest {
  /** A unix socket the caller listens on; the program's fd 3 is connected to it. */
  socketPath: string
  /** A file the program gets on fd 4. */
  filterPath: string
  /** The program's stderr (made, or truncated, mode 0600). */
  logPath: string
  program: string
  args: string[]
}

/** Starts programs and says how each ended. */
export interface RuncLauncher {
  /** Resolves with the exit code (128 + signal when one ended it; 127 when it could not start, why in its log). */
  run(req: LaunchRequest, call?: CallOptions): Promise<number>
  /** Lets the launcher go; runs in flight still end, and it exits after them. */
  close(): void
}

interface Pending {
  /** The launcher the run went to (after a close, a new one may serve the next runs). */
  owner: ChildProcessByStdio<Writable, Readable, null>
  resolve(code: number): void
  reject(err: Error): void
}

const field = (s: string): string => {
  if (s.includes('\0')) throw new SandstormError('internal', `a runc launch field holds a NUL byte: ${JSON.stringify(s)}`)
  return `${s}\0`
}

/** A launcher of the binary at `path`. */
export function createRuncLauncher(path: string): RuncLauncher {
  let child: ChildProcessByStdio<Writable, Readable, null> | undefined
  const pending = new Map<string, Pending>()
  let nextTag = 0

  const fail = (c: NonNullable<typeof child>, err: Error): void => {
    if (child === c) child = undefined
    for (const [tag, p] of pending) {
      if (p.owner !== c) continue
      pending.delete(tag)
      p.reject(err)
    }
  }

  const onLine = (line: string): void => {
    const [what, tag, ...rest] = line.split(' ')
    const p = tag === undefined ? undefined : pending.get(tag)
    if (!p || !tag) return
    pending.delete(tag)
    if (what === 'exit') p.resolve(Number(rest[0]))
    else p.reject(new SandstormError('internal', `runc could not be started: ${rest.join(' ') || line}`))
    // A run in flight keeps the agent's process alive; an idle launcher does not.
    if (pending.size === 0 && child) holdProcessOpen(child, false)
  }

  const started = (): NonNullable<typeof child> => {
    if (child) return child
    const c = spawn(path, [], { stdio: ['pipe', 'pipe', 'inherit'] })
    let buffered = ''
    c.stdout.setEncoding('utf8').on('data', (text: string) => {
      buffered += text
      let nl: number
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        onLine(line)
      }
    })
    c.on('error', (err) => fail(c, new SandstormError('internal', `the runc launcher could not run: ${err.message}`, { cause: err })))
    // 'close', not 'exit': the answers it wrote last are read by then.
    c.on('close', (code, signal) => fail(c, new SandstormError('internal', `the runc launcher exited (${signal ?? `code ${code}`})`)))
    c.stdin.on('error', () => undefined)
    child = c
    return c
  }

  return {
    async run(req, call = {}) {
      const tag = String(nextTag++)
      const fields = [req.socketPath, req.filterPath, req.logPath, req.program, ...req.args]
      const request = ['run', tag, String(fields.length), ...fields].map(field).join('')
      const c = started()
      const done = new Promise<number>((resolve, reject) => pending.set(tag, { owner: c, resolve, reject }))
      holdProcessOpen(c, true)
      c.stdin.write(request)
      // Abort and timeout end the run at once (SIGKILL), and say which it was once it has ended.
      let why: SandstormError | undefined
      const stop = (err: SandstormError) => {
        why ??= err
        if (pending.has(tag)) c.stdin.write(['kill', tag, '0'].map(field).join(''))
      }
      const onAbort = () => stop(new SandstormError('canceled', `${req.program} was canceled`))
      if (call.signal?.aborted) onAbort()
      call.signal?.addEventListener('abort', onAbort, { once: true })
      const timer = call.timeoutMs === undefined ? undefined : setTimeout(() => stop(new SandstormError('deadline_exceeded', `${req.program} took longer than ${call.timeoutMs} ms`)), call.timeoutMs)
      try {
        const code = await done
        if (why) throw why
        return code
      } finally {
        clearTimeout(timer)
        call.signal?.removeEventListener('abort', onAbort)
      }
    },
    close() {
      const c = child
      child = undefined
      c?.stdin.end()
      if (c && pending.size === 0) holdProcessOpen(c, false)
    },
  }
}
