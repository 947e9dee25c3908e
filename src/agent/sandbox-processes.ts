/**
 * The commands of the agent's sandboxes: started as the user and in the directory asked for (or
 * the image's defaults), followed, signalled, fed and resized; finished ones kept for a while.
 */
import { SandstormError, type CallOptions } from '../shared/index.js'
import { checkTerminalSize, type RuntimeBackend } from '../runtime/index.js'
import type { AgentApi, AgentExecRequest } from './agent-api.js'
import { OutputBudget } from './output-budget.js'
import { ProcessRecord } from './process-record.js'
import type { SandboxRecord } from './sandbox-state.js'

/** Finished processes kept per sandbox for listing and late followers. */
const keptFinishedProcesses = 64
/** Output of finished processes kept per sandbox, newest first. */
const keptFinishedOutputBytes = 32 * 1024 * 1024

/** A sandbox the agent runs, as it keeps it in memory. */
export interface LiveSandbox {
  record: SandboxRecord
  processes: Map<number, ProcessRecord>
  /** What its running processes keep of their output, between them (output-budget.ts). */
  output: OutputBudget
  /** uid/gid/home per user name, resolved inside the sandbox once. */
  users: Map<string, { uid: number; gid: number; home: string }>
}

/** A sandbox with no command run yet. */
export function liveSandbox(record: SandboxRecord): LiveSandbox {
  return { record, processes: new Map(), users: new Map(), output: new OutputBudget() }
}

/** What the commands need of the agent. */
export interface SandboxProcessesOptions {
  /** The live sandbox `id`; not_found when there is none. */
  get(id: string): LiveSandbox
  /** The backend that runs sandbox `id`. */
  backendOf(id: string): RuntimeBackend
}

/** The agent's calls on commands. */
export type SandboxProcesses = Pick<AgentApi, 'exec' | 'follow' | 'wait' | 'processes' | 'signal' | 'writeStdin' | 'resizePty'>

/** The commands of the sandboxes `options.get` finds. */
export function createSandboxProcesses({ get, backendOf }: SandboxProcessesOptions): SandboxProcesses {
  function proc(id: string, pid: number): ProcessRecord {
    const record = get(id).processes.get(pid)
    if (!record) throw new SandstormError('not_found', `process ${pid} not found in sandbox "${id}"`)
    return record
  }

  /** A user as a name or uid, optionally with `:group` (a gid, or the user's own group name, as images' USER has it). */
  async function resolveUser(id: string, user: string, call?: CallOptions): Promise<{ uid: number; gid: number; home: string }> {
    const colon = user.indexOf(':')
    if (colon >= 0) {
      const [name, group] = [user.slice(0, colon), user.slice(colon + 1)]
      const found = await resolveUser(id, name, call)
      if (/^[0-9]+$/.test(group)) return { ...found, gid: Number(group) }
      if (group === name || group === '') return found
      throw new SandstormError('invalid_argument', `user "${user}": expected the group as a gid or the user's own group name, got "${group}"`)
    }
    if (/^[0-9]+$/.test(user)) return { uid: Number(user), gid: Number(user), home: '/' }
    const cache = get(id).users
    let found = cache.get(user)
    if (!found) {
      found = await backendOf(id).resolveUser(id, user, call)
      cache.set(user, found)
    }
    return found
  }

  /**
   * Forgets finished processes past the newest `keptFinishedProcesses`, or past
   * `keptFinishedOutputBytes` of output between them: a sandbox whose commands print a lot
   * (builds, `cat` of big files) held up to 8 MiB for each of 64, in the agent's memory.
   */
  function forget(sandbox: LiveSandbox): void {
    const finished = [...sandbox.processes.values()].filter((p) => p.result !== null).reverse()
    let bytes = 0
    finished.forEach((p, newer) => {
      bytes += p.outputBytes
      if (newer >= keptFinishedProcesses || bytes > keptFinishedOutputBytes) sandbox.processes.delete(p.pid)
    })
  }

  return {
    async exec(id: string, req: AgentExecRequest, call?: CallOptions): Promise<{ pid: number }> {
      // A bad size is refused before anything starts in the sandbox.
      const pty = req.pty !== undefined ? checkTerminalSize(req.pty, 'pty') : undefined
      const sandbox = get(id)
      const defaults = sandbox.record.execDefaults
      let userName = req.user ?? defaults?.user ?? req.fallbackUser ?? 'root'
      // E2B's default user is no account of most images: a command of an image template then runs as root, as Docker's.
      const user = await resolveUser(id, userName, call).catch(async (err: unknown) => {
        if (req.user !== undefined || defaults?.user !== undefined || defaults === undefined || userName === 'root') throw err
        userName = 'root'
        return resolveUser(id, userName, call)
      })
      const cwd = req.cwd ?? defaults?.cwd ?? user.home
      const userEnv = req.fallbackUser !== undefined ? { USER: userName.split(':')[0]!, ...req.env } : req.env
      // A terminal's programs read TERM for what it can draw: xterm.js and most terminals are xterm's kin.
      const env = pty && userEnv.TERM === undefined ? { TERM: 'xterm-256color', ...userEnv } : userEnv
      let record: ProcessRecord | undefined
      const early: [('stdout' | 'stderr'), Uint8Array][] = []
      // The caller's signal cancels the start only (agent-api.ts): the backend ties a process's
      // life to the signal it gets, so it gets one that stops following the caller's once started.
      const start = new AbortController()
      const cancelStart = () => start.abort(call?.signal?.reason)
      if (call?.signal?.aborted) cancelStart()
      call?.signal?.addEventListener('abort', cancelStart, { once: true })
      const process = await backendOf(id)
        .exec(
          id,
          { argv: req.argv, env: { HOME: user.home, ...env }, cwd, uid: user.uid, gid: user.gid, timeoutMs: req.timeoutMs, ...(pty ? { pty } : {}) },
          {
            onStdout: (c) => (record ? record.output('stdout', c) : early.push(['stdout', c])),
            onStderr: (c) => (record ? record.output('stderr', c) : early.push(['stderr', c])),
          },
          { signal: start.signal },
        )
        .finally(() => call?.signal?.removeEventListener('abort', cancelStart))
      record = new ProcessRecord(process.pid, req.argv, cwd, process, sandbox.output)
      for (const [type, chunk] of early) record.output(type, chunk)
      forget(sandbox)
      sandbox.processes.set(process.pid, record)
      if (req.stdin) await process.writeStdin(req.stdin)
      // A terminal's input is what is typed, for as long as it runs.
      if (!req.keepStdin && !pty) process.closeStdin()
      return { pid: process.pid }
    },

    follow: (id, pid, call) => proc(id, pid).follow(call?.signal),
    wait: (id, pid) => proc(id, pid).process.result,
    processes: async (id) => [...get(id).processes.values()].map((p) => p.info()),
    signal: (id, pid, signal) => proc(id, pid).process.kill(signal),

    async writeStdin(id: string, pid: number, data: Uint8Array | null, close: boolean): Promise<void> {
      const record = proc(id, pid)
      if (record.result) throw new SandstormError('failed_precondition', `process ${pid} has already ended`)
      if (data) await record.process.writeStdin(data)
      if (close) record.process.closeStdin()
    },

    async resizePty(id, pid, size) {
      const checked = checkTerminalSize(size, 'size')
      const record = proc(id, pid)
      if (!record.process.resize) throw new SandstormError('failed_precondition', `process ${pid} of sandbox "${id}" has no terminal: it was not started with pty`)
      if (record.result) throw new SandstormError('failed_precondition', `process ${pid} of sandbox "${id}" has ended: its terminal is gone`)
      await record.process.resize(checked)
    },
  }
}
