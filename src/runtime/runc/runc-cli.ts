import { execFile, spawn, type ExecFileException } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, openSync, readFileSync, rmSync, statfsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { join } from 'node:path'
import { complainsOfFullDisk, diskFullError, SandstormError, type CallOptions } from '../../shared/index.js'

/** Options of the runc command wrapper. */
export interface RuncCliOptions {
  /** The runc binary; `runsc` and `crun` take the same arguments. @default 'runc' */
  binary?: string
  /** runc's state directory (`--root`). */
  stateRoot: string
}

/** A container as `runc list` reports it. */
export interface RuncContainer {
  id: string
  status: 'created' | 'running' | 'paused' | 'stopped'
  pid: number
  bundle: string
}

/** How one runc run ended. */
interface RuncResult {
  exitCode: number | null
  stdout: string
  stderr: string
}

/** The init process of a container as runc recorded it: its host pid and its start time in clock ticks. */
export interface InitProcess {
  pid: number
  startTicks: number
}

/** The runc commands the backend uses, each run once and checked. */
export function createRuncCli(options: RuncCliOptions) {
  const binary = options.binary ?? 'runc'
  const base = ['--root', options.stateRoot]

  /**
   * Plain `execFile` rather than execa: these runs sit on every destroy, restore and pause, and
   * execa cost about twice the wall time and twice the node CPU per run (8 ms against 3.5 ms).
   */
  function run(args: string[], call: CallOptions = {}): Promise<RuncResult> {
    return new Promise((resolve, reject) => {
      const child = execFile(binary, [...base, ...args], { signal: call.signal, timeout: call.timeoutMs, encoding: 'utf8' }, (err: ExecFileException | null, stdout, stderr) => {
        if (!err) return resolve({ exitCode: 0, stdout, stderr })
        if (call.signal?.aborted) return reject(new SandstormError('canceled', `runc ${args[0]} was canceled`))
        if (typeof err.code === 'number') return resolve({ exitCode: err.code, stdout, stderr })
        if (err.killed && call.timeoutMs !== undefined) return reject(new SandstormError('deadline_exceeded', `runc ${args[0]} took longer than ${call.timeoutMs} ms`))
        reject(new SandstormError('internal', `runc ${args[0]} could not run: ${err.signal ? `killed by ${err.signal}` : err.message}`))
      })
      child.stdin?.end()
    })
  }

  return {
    binary,
    baseArgs: base,
    /**
     * Starts a container detached. The agent's end of a socket whose other end is the container's
     * fd 3 (`--preserve-fds`), where the init serves commands, goes to `open` at once: the init
     * may speak before runc has exited, and Node drops what a child's stdio socket reads once the
     * child exited unless someone listens. `filter` is the compiled seccomp program: the init
     * reads it to its end on fd 4. The init inherits runc's stdio, so stdout is /dev/null and
     * stderr a file in the bundle: a pipe would be held open by the sandbox for its whole life.
     */
    async runDetached<T extends { close(): void }>(id: string, bundle: string, filter: Uint8Array, open: (socket: Socket) => T, call: CallOptions = {}): Promise<T> {
      const logFile = join(bundle, 'start.log')
      // Synchronous file calls: microseconds each, where async ones queue in libuv's pool.
      const log = openSync(logFile, 'w', 0o600)
      let code: number | null
      let opened: T
      let program: Socket | undefined
      try {
        // Plain spawn: execa keeps pipes of its own that the sandbox's init would inherit and hold.
        // Node makes a 'pipe' a socket pair, so fd 3 is a socket that both ends can write.
        const child = spawn(binary, [...base, 'run', '--detach', '--preserve-fds', '2', '--bundle', bundle, id], {
          stdio: ['ignore', 'ignore', log, 'pipe', 'pipe'],
          signal: call.signal,
          timeout: call.timeoutMs,
        })
        opened = open(child.stdio[3] as Socket)
        program = child.stdio[4] as Socket
        program.on('error', () => undefined)
        program.end(filter)
        ;[code] = (await once(child, 'exit')) as [number | null]
      } finally {
        closeSync(log)
        program?.destroy()
      }
      // Read only on failure: on success it holds at most warnings.
      const text = code === 0 ? '' : readLog(logFile)
      rmSync(logFile, { force: true })
      if (code !== 0) {
        opened.close()
        // On a full disk runc cannot write its state, nor its complaint into the log.
        if (complainsOfFullDisk(text) || hostDiskFull(bundle)) throw diskFullError('starting the sandbox', text || 'runc run failed')
        throw new SandstormError('internal', `starting the sandbox failed: ${lastLine(text) || 'runc run failed'}`)
      }
      return opened
    },
    async kill(id: string, signal: string, call?: CallOptions): Promise<void> {
      await run(['kill', id, signal], call)
    },
    /**
     * The container's init as runc's state file records it, or null when runc holds no state
     * for it. Read from the file (a few tens of KiB), not through `runc state`: a run of runc
     * costs milliseconds of CPU, and destroy sits on the tree search's path.
     */
    initProcess(id: string): InitProcess | null {
      try {
        const state = JSON.parse(readFileSync(join(options.stateRoot, id, 'state.json'), 'utf8')) as { init_process_pid?: number; init_process_start?: number }
        if (!state.init_process_pid) return null
        return { pid: state.init_process_pid, startTicks: state.init_process_start ?? 0 }
      } catch {
        return null
      }
    },
    /** Removes runc's state of a container whose processes and cgroups are gone. */
    async forgetState(id: string): Promise<void> {
      await rm(join(options.stateRoot, id), { recursive: true, force: true })
    },
    /**
     * Removes a container; a missing one is not an error. With its init still alive, runc kills it
     * and then checks every 100 ms whether it died, so callers kill and reap the init first.
     */
    async deleteForce(id: string, call?: CallOptions): Promise<void> {
      const r = await run(['delete', '--force', id], call)
      if (r.exitCode !== 0 && !/does not exist|not exist/.test(r.stderr)) {
        throw new SandstormError('internal', `removing the sandbox failed: ${lastLine(r.stderr)}`)
      }
    },
    async pause(id: string, call?: CallOptions): Promise<void> {
      const r = await run(['pause', id], call)
      if (r.exitCode !== 0) throw new SandstormError('failed_precondition', 'pausing the sandbox failed: it is not running', { cause: new Error(lastLine(r.stderr)) })
    },
    async resume(id: string, call?: CallOptions): Promise<void> {
      const r = await run(['resume', id], call)
      if (r.exitCode !== 0) throw new SandstormError('failed_precondition', 'resuming the sandbox failed: it is not paused', { cause: new Error(lastLine(r.stderr)) })
    },
    /** One container's status, or null when runc does not know it. */
    async state(id: string, call?: CallOptions): Promise<RuncContainer['status'] | null> {
      const r = await run(['state', id], call)
      if (r.exitCode !== 0) {
        if (/does not exist|not exist/.test(r.stderr)) return null
        throw new SandstormError('internal', `runc state failed: ${lastLine(r.stderr)}`)
      }
      return (JSON.parse(r.stdout) as { status: RuncContainer['status'] }).status
    },
    async list(call?: CallOptions): Promise<RuncContainer[]> {
      // runc list reads every state dir and fails when one disappears meanwhile (a concurrent
      // delete); that is a race, not an error, so it is read again.
      for (let attempt = 1; ; attempt++) {
        const r = await run(['list', '--format', 'json'], call)
        if (r.exitCode === 0) return (JSON.parse(r.stdout || 'null') as RuncContainer[] | null) ?? []
        if (attempt >= 5 || !/no such file or directory/.test(r.stderr)) {
          throw new SandstormError('internal', `runc list failed: ${lastLine(r.stderr)}`)
        }
      }
    },
  }
}

/** The runc command wrapper's type. */
export type RuncCli = ReturnType<typeof createRuncCli>

/** runc logs JSON-ish lines; the last one carries the reason. */
export function lastLine(text: string): string {
  const line = text.trim().split('\n').pop() ?? ''
  // The message may hold escaped quotes (a path in it, say): read up to the closing quote.
  const msg = /msg="((?:[^"\\]|\\.)*)"/.exec(line)?.[1] ?? line
  return msg.replace(/\\(.)/g, '$1')
}

function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

/** Whether the filesystem of `dir` has less than 1 MiB left for root: too little for runc's state and a sandbox's start. */
function hostDiskFull(dir: string): boolean {
  try {
    const s = statfsSync(dir)
    return s.bfree * s.bsize < 1024 * 1024
  } catch {
    return false
  }
}
