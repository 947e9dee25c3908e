/**
 * A resident shell for the host commands on a create's path (the `ip` commands of network slots,
 * the mkfs and mount of a sandbox's disk image). Spawning a process from the agent forks the
 * agent, and a Node process of a few hundred MiB blocks its event loop for about 10 ms per fork:
 * a step run that way held up the create or the answer beside it. The shell is forked once; each
 * script then forks only the small shell. While idle it keeps no process alive.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import type { Readable, Writable } from 'node:stream'
import { holdProcessOpen } from './child-hold.js'
import { SandstormError } from './errors.js'

/** How a script ended: its exit status, and what it printed (stdout and stderr together). */
export interface ShellResult {
  code: number
  output: string
}

/** Runs shell scripts one at a time in one long-lived `sh`. */
export interface ResidentShell {
  run(script: string): Promise<ShellResult>
  close(): void
}

interface Pending {
  script: string
  resolve(result: ShellResult): void
  reject(err: Error): void
}

/** A word for a script: single-quoted, so that nothing in it is expanded. */
export const shellQuote = (word: string): string => `'${word.replaceAll("'", "'\\''")}'`

/** A shell started on first use, and again after it died; `name` says whose it is in errors. */
export function createResidentShell(name: string): ResidentShell {
  let child: ChildProcessByStdio<Writable, Readable, null> | undefined
  // Marks where each script's output ends; random so that no output can forge it.
  const marker = `__sandstorm_done_${randomBytes(8).toString('hex')}`
  const queue: Pending[] = []
  let current: Pending | undefined
  let buffered = ''

  const fail = (err: Error): void => {
    child = undefined
    buffered = ''
    for (const p of [current, ...queue.splice(0)]) p?.reject(err)
    current = undefined
  }

  const next = (): void => {
    if (current || queue.length === 0) return
    current = queue.shift()!
    if (!child) {
      const c = spawn('sh', [], { stdio: ['pipe', 'pipe', 'inherit'] })
      c.stdout.setEncoding('utf8').on('data', (text: string) => {
        buffered += text
        const at = buffered.indexOf(`${marker} `)
        if (at < 0) return
        const end = buffered.indexOf('\n', at)
        if (end < 0) return
        const code = Number(buffered.slice(at + marker.length + 1, end))
        const output = buffered.slice(0, at)
        buffered = buffered.slice(end + 1)
        const done = current
        current = undefined
        done?.resolve({ code, output })
        next()
        if (!current) idle(c)
      })
      c.on('error', (err) => fail(new SandstormError('internal', `the ${name} shell could not run: ${err.message}`, { cause: err })))
      c.on('exit', (code, signal) => {
        if (child === c) fail(new SandstormError('internal', `the ${name} shell exited (${signal ?? `code ${code}`})`))
      })
      c.stdin.on('error', () => undefined)
      child = c
    }
    busy(child)
    // A subshell, so that an `exit` in the script ends the script, not the shell.
    child.stdin.write(`( ${current.script}\n) 2>&1\necho "${marker} $?"\n`)
  }

  // A script running keeps the process alive; an idle shell does not.
  const busy = (c: ChildProcessByStdio<Writable, Readable, null>): void => holdProcessOpen(c, true)
  const idle = (c: ChildProcessByStdio<Writable, Readable, null>): void => holdProcessOpen(c, false)

  return {
    run: (script) =>
      new Promise<ShellResult>((resolve, reject) => {
        queue.push({ script, resolve, reject })
        next()
      }),
    close() {
      const c = child
      child = undefined
      c?.stdin.end()
    },
  }
}
