import { mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { complainsOfFullDisk, diskFullError, howItEnded, runProcess, SandstormError, type CallOptions } from '../../shared/index.js'
import { hostHelpers } from './layout.js'
import { createRuncLauncher, type RuncLauncher } from './runc-launcher.js'

/** Options of the runc command wrapper. */
export interface RuncCliOptions {
  /** The runc binary; `runsc` and `crun` take the same arguments. @default 'runc' */
  binary?: string
  /** runc's state directory (`--root`). */
  stateRoot: string
  /** The resident launcher that starts `runc run` (native/runc-launcher.c). @default the built one */
  launcherPath?: string
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

/** The longest path a unix socket can be bound to (sun_path, less its NUL). */
const maxSocketPath = 107

/** The runc commands the backend uses, each run once and checked. */
export function createRuncCli(options: RuncCliOptions) {
  const binary = options.binary ?? 'runc'
  const base = ['--root', options.stateRoot]
  let started: RuncLauncher | undefined
  const launcher = () => (started ??= createRuncLauncher(options.launcherPath ?? hostHelpers.runcLauncher))
  // A unix socket's path holds at most 107 bytes. The bundle's own dir (0700) when it fits; else a
  // private dir (0700) of this CLI's, made when first needed and removed by close.
  let socketDir: string | undefined
  const socketPathFor = (id: string, bundle: string): string => {
    const inBundle = join(bundle, 'init.sock')
    if (Buffer.byteLength(inBundle) <= maxSocketPath) return inBundle
    socketDir ??= mkdtempSync(join(tmpdir(), 'sandstorm-runc-'))
    return join(socketDir, `${id}.sock`)
  }

  async function run(args: string[], call: CallOptions = {}): Promise<RuncResult> {
    const result = await runProcess(binary, [...base, ...args], { signal: call.signal, timeoutMs: call.timeoutMs })
    if (result.exitCode !== null) return { exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr }
    if (result.canceled) throw new SandstormError('canceled', `runc ${args[0]} was canceled`)
    if (result.timedOut) throw new SandstormError('deadline_exceeded', `runc ${args[0]} took longer than ${call.timeoutMs} ms`)
    throw new SandstormError('internal', `runc ${args[0]} could not run: ${howItEnded(result)}`)
  }

  return {
    binary,
    baseArgs: base,
    /** Lets the launcher go (it exits once its runs in flight have ended); a later run starts another. */
    close(): void {
      started?.close()
      started = undefined
      if (socketDir) rmSync(socketDir, { recursive: true, force: true })
      socketDir = undefined
    },
    /**
     * Starts a container detached. The container's fd 3 (`--preserve-fds`), where the init serves
     * commands, is connected to a unix socket in the bundle that the agent listens on; the agent's
     * end goes to `open` as soon as it is accepted: the init may speak before runc has exited.
     * `filter` is the compiled seccomp program: the init reads it to its end on fd 4 (a file in
     * the bundle). runc is started by the resident launcher, not forked from the agent. The init
     * inherits runc's stdio, so stdout is /dev/null and stderr a file in the bundle: a pipe would be
     * held open by the sandbox for its whole life.
     */
    async runDetached<T extends { close(): void }>(id: string, bundle: string, filter: Uint8Array, open: (socket: Socket) => T, call: CallOptions = {}): Promise<T> {
      const files = { socketPath: socketPathFor(id, bundle), filterPath: join(bundle, 'seccomp.bpf'), logPath: join(bundle, 'start.log') }
      // Synchronous file calls: microseconds each, where async ones queue in libuv's pool.
      writeFileSync(files.filterPath, filter, { mode: 0o600 })
      const server = createServer()
      let opened: T | undefined
      // The launcher's child connects before it runs runc, so a runc that ran has connected.
      const connected = new Promise<T>((resolve) =>
        server.once('connection', (socket) => {
          server.close()
          resolve((opened = open(socket)))
        }),
      )
      let code: number
      try {
        await new Promise<void>((resolve, reject) => server.once('error', reject).listen(files.socketPath, resolve))
        code = await launcher().run({ ...files, program: binary, args: [...base, 'run', '--detach', '--preserve-fds', '2', '--bundle', bundle, id] }, call)
        if (code === 0) await connected
      } catch (err) {
        opened?.close()
        throw err
      } finally {
        server.close()
        for (const f of [files.socketPath, files.filterPath]) rmSync(f, { force: true })
      }
      // Read only on failure: on success it holds at most warnings.
      const text = code === 0 ? '' : readLog(files.logPath)
      rmSync(files.logPath, { force: true })
      if (code !== 0) {
        opened?.close()
        // On a full disk runc cannot write its state, nor its complaint into the log.
        if (complainsOfFullDisk(text) || hostDiskFull(bundle)) throw diskFullError('starting the sandbox', text || 'runc run failed')
        throw new SandstormError('internal', `starting the sandbox failed: ${lastLine(text) || 'runc run failed'}`)
      }
      return opened!
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
