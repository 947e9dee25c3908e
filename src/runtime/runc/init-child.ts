import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { PassThrough } from 'node:stream'
import { SandstormError, type ProcessResult } from '../../shared/index.js'
import { execCgroup, oomKillCountNow } from './cgroups.js'
import { requestFits, type InitChannel } from './init-channel.js'
import type { ChildOptions, SandboxChild } from './sandbox-child.js'

/** Output held for a reader before the init is asked to stop reading that command's pipes. */
const outputHighWater = 1 << 20
/** Stdin sent ahead of what the command has taken. */
const stdinWindow = 1 << 20

/** A sandbox's init, as the agent reaches it. */
export interface InitHandle {
  channel: InitChannel
  /** The init's pid on the host. */
  hostPid: number
}

/**
 * Starts a command through the sandbox's init: it forks the command inside the sandbox, we move it
 * into a per-command freezer cgroup (so that its whole tree can be killed), then let it run.
 * Same contract as `startSandboxChild`, at a fraction of a `runc exec`.
 */
export async function startInitChild(init: InitHandle, options: ChildOptions): Promise<SandboxChild> {
  const request = { argv: options.argv, env: options.env, cwd: options.cwd, uid: options.uid, gid: options.gid }
  if ([options.cwd, ...options.argv, ...options.env].some((s) => s.includes('\0'))) {
    throw new SandstormError('invalid_argument', 'a command, its cwd and its environment cannot hold NUL characters')
  }
  if (!requestFits(request)) throw new SandstormError('invalid_argument', 'the command and its environment exceed 1 MiB')
  const { channel } = init
  const cgroup = execCgroup(options.sandboxId, `x${randomBytes(6).toString('hex')}`)
  cgroup.createNow()
  const oomBefore = oomKillCountNow(options.sandboxId)
  const startedAt = Date.now()

  const stdout = new PassThrough({ highWaterMark: outputHighWater })
  const stderr = new PassThrough({ highWaterMark: outputHighWater })
  let outputPaused = false
  let stdinOpen = true
  let unacked = 0
  let onAck: (() => void) | undefined
  let onExit!: (status: number) => void
  const exited = new Promise<number>((resolve) => (onExit = resolve))

  let id = 0
  const deliver = (stream: PassThrough, data: Buffer) => {
    // A reader that went away lets the rest drain away.
    if (stream.destroyed || stream.writableEnded) return
    if (!stream.write(data) && !outputPaused) {
      outputPaused = true
      channel.pause(id)
      stream.once('drain', () => {
        outputPaused = false
        channel.resume(id)
      })
    }
  }
  const pid = await new Promise<number>((resolve, reject) => {
    id = channel.start(request, {
      started: resolve,
      failed: (reason) => reject(startError(reason, options)),
      stdout: (data) => deliver(stdout, data),
      stderr: (data) => deliver(stderr, data),
      ack(bytes) {
        unacked -= bytes
        onAck?.()
      },
      stdinGone() {
        stdinOpen = false
        onAck?.()
      },
      exit: (status) => onExit(status),
    })
  }).catch(async (err: unknown) => {
    await cgroup.remove()
    throw err
  })

  const hostPid = hostPidOf(init.hostPid, options.sandboxId, pid)
  try {
    if (hostPid === null) throw new Error(`command ${pid} is not among the sandbox's processes`)
    cgroup.addNow(hostPid)
  } catch (err) {
    channel.cancel(id)
    await cgroup.remove()
    throw new SandstormError('internal', `starting the command failed: ${(err as Error).message}`)
  }
  channel.go(id)

  let sentSignal: NodeJS.Signals | null = null
  let timedOut = false
  let ended = false
  const killTree = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (ended) return
    sentSignal = signal
    await cgroup.signalAll(signal)
  }
  const timer = options.timeoutMs
    ? setTimeout(() => {
        timedOut = true
        void killTree('SIGKILL')
      }, options.timeoutMs)
    : undefined
  const onAbort = () => void killTree('SIGKILL')
  options.killSignal?.addEventListener('abort', onAbort, { once: true })

  const result = exited.then((exitCode): ProcessResult => {
    ended = true
    stdinOpen = false
    clearTimeout(timer)
    options.killSignal?.removeEventListener('abort', onAbort)
    stdout.end()
    stderr.end()
    const oomKilled = exitCode === 137 && oomKillCountNow(options.sandboxId) > oomBefore
    void cgroup.remove()
    return { exitCode, signal: sentSignal ?? (oomKilled ? 'SIGKILL' : null), timedOut, oomKilled, durationMs: Date.now() - startedAt }
  })

  return {
    pid,
    stdout,
    stderr,
    result,
    async writeStdin(data: Uint8Array) {
      const closed = () => new SandstormError('failed_precondition', 'stdin of this process is closed')
      if (!stdinOpen) throw closed()
      unacked += data.length
      channel.stdin(id, data)
      while (stdinOpen && unacked > stdinWindow) await new Promise<void>((resolve) => (onAck = resolve))
      onAck = undefined
      if (!stdinOpen && unacked > 0) throw closed()
    },
    closeStdin() {
      if (!stdinOpen) return
      stdinOpen = false
      channel.closeStdin(id)
    },
    kill: killTree,
  }
}

/**
 * The host pid of a process the init just forked, from the pid the sandbox sees: among the init's
 * children (newest last), the one whose innermost NSpid is it.
 */
function hostPidOf(initHostPid: number, sandboxId: string, sandboxPid: number): number | null {
  let candidates: number[]
  try {
    candidates = readFileSync(`/proc/${initHostPid}/task/${initHostPid}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number)
  } catch {
    candidates = execCgroup(sandboxId, '.').pidsNow()
  }
  for (const candidate of candidates.reverse()) {
    try {
      const nspid = /^NSpid:\s+([\d\s]+)$/m.exec(readFileSync(`/proc/${candidate}/status`, 'utf8'))?.[1]?.trim().split(/\s+/)
      if (nspid && Number(nspid[nspid.length - 1]) === sandboxPid && nspid.length > 1) return candidate
    } catch {
      // gone meanwhile
    }
  }
  return null
}

function startError(reason: string, options: ChildOptions): SandstormError {
  if (reason.startsWith('cwd:')) return new SandstormError('invalid_argument', `cwd "${options.cwd}" is not a directory in the sandbox`)
  if (reason.startsWith('user:')) return new SandstormError('invalid_argument', `cannot run as uid ${options.uid}, gid ${options.gid}: ${reason}`)
  if (/not running/.test(reason)) return new SandstormError('failed_precondition', reason)
  return new SandstormError('internal', `starting the command failed: ${reason}`)
}
