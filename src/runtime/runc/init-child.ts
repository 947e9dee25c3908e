import { constants } from 'node:os'
import { PassThrough, type Readable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { SandstormError, type ProcessResult } from '../../shared/index.js'
import type { RuntimeProcess, TerminalSize } from '../backend.js'
import { checkTerminalSize } from '../terminal-size.js'
import { maxSandboxTerminals } from './oci-spec.js'
import { oomKillCountNow } from './cgroups.js'
import { requestFits, type ExitCause, type InitChannel, type StartFailure } from './init-channel.js'

/** A command to start inside a sandbox. */
export interface ChildOptions {
  sandboxId: string
  argv: string[]
  env: string[]
  cwd: string
  uid: number
  gid: number
  /** Kills the whole process tree after this long. */
  timeoutMs?: number
  /** Kills the whole process tree when it fires. */
  killSignal?: AbortSignal
  /** Runs it on a new terminal of this size, made by the init inside the sandbox. */
  pty?: TerminalSize
}

/** A started command with its raw output streams. */
export interface SandboxChild extends RuntimeProcess {
  readonly stdout: Readable
  readonly stderr: Readable
}

/** Output held for a reader before the init is asked to stop reading that command's pipes. */
const outputHighWater = 1 << 20
/** Stdin sent ahead of what the command has taken. */
const stdinWindow = 1 << 20

/**
 * Starts a command through the sandbox's init, which forks it inside the sandbox under a keeper
 * of its own (see native/sandbox-init.c): a kill or a timeout ends every process the command
 * started, daemons included. Should the sandbox kill that keeper, the init kills all of it at once
 * (the result: 137, SIGKILL). A fork in the sandbox: a fraction of what a `runc exec` costs.
 */
export async function startInitChild(channel: InitChannel, options: ChildOptions): Promise<SandboxChild> {
  const pty = options.pty ? checkTerminalSize(options.pty) : undefined
  const request = { argv: options.argv, env: options.env, cwd: options.cwd, uid: options.uid, gid: options.gid, ...(pty ? { pty } : {}) }
  if ([options.cwd, ...options.argv, ...options.env].some((s) => s.includes('\0'))) {
    throw new SandstormError('invalid_argument', 'a command, its cwd and its environment cannot hold NUL characters')
  }
  if (!requestFits(request)) throw new SandstormError('invalid_argument', 'the command and its environment exceed 1 MiB')
  const oomBefore = oomKillCountNow(options.sandboxId)
  const startedAt = Date.now()

  const stdout = new PassThrough({ highWaterMark: outputHighWater })
  const stderr = new PassThrough({ highWaterMark: outputHighWater })
  let outputPaused = false
  let stdinOpen = true
  let unacked = 0
  let onAck: (() => void) | undefined
  let onExit!: (exit: { status: number; cause?: ExitCause }) => void
  const exited = new Promise<{ status: number; cause?: ExitCause }>((resolve) => (onExit = resolve))

  let id = 0
  const deliver = (stream: PassThrough, data: Buffer) => {
    // A reader that went away lets the rest drain away.
    if (stream.destroyed || stream.writableEnded) return
    if (!stream.write(data) && !outputPaused) {
      outputPaused = true
      channel.pause(id)
      // Resumed once the reader caught up, or went away (the init holds a command's exit back
      // while its output is paused).
      const resume = () => {
        stream.off('drain', resume).off('close', resume)
        outputPaused = false
        channel.resume(id)
      }
      stream.once('drain', resume).once('close', resume)
    }
  }
  let running = false
  const pid = await new Promise<number>((resolve, reject) => {
    id = channel.start(request, {
      started: (startedPid) => {
        running = true
        resolve(startedPid)
      },
      failed: (failure) => reject(startError(failure, options)),
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
      // An end before the start: the channel to the init was lost while the command was asked for.
      exit: (status, cause) => (running ? onExit({ status, cause }) : reject(new SandstormError('unavailable', "the sandbox's init went away before the command started"))),
    })
  })

  let sentSignal: NodeJS.Signals | null = null
  let timedOut = false
  let ended = false
  // Once the command's own process ended, the processes it left running are still its tree:
  // a kill reaches them for as long as the init knows the command (its keeper is not gone).
  const killTree = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (!ended) sentSignal = signal
    channel.kill(id, constants.signals[signal])
  }
  const timer = options.timeoutMs
    ? setTimeout(() => {
        timedOut = true
        void killTree('SIGKILL')
      }, options.timeoutMs)
    : undefined
  const onAbort = () => void killTree('SIGKILL')
  options.killSignal?.addEventListener('abort', onAbort, { once: true })

  const result = exited.then(async ({ status: exitCode, cause }): Promise<ProcessResult> => {
    ended = true
    stdinOpen = false
    onAck?.()
    clearTimeout(timer)
    options.killSignal?.removeEventListener('abort', onAbort)
    const oomKilled = exitCode === 137 && oomKillCountNow(options.sandboxId) > oomBefore
    // The output, the exit and the start can come in one read of the socket, before our caller
    // has attached to the streams: the result waits until both were read to their end (or
    // dropped by a reader that went away), so that no output comes after it.
    stdout.end()
    stderr.end()
    await Promise.all([stdout, stderr].map((s) => finished(s).catch(() => undefined)))
    // A reset, or the death of its keeper (something in the sandbox killed it): the init killed
    // the command and all it started.
    return {
      exitCode,
      signal: sentSignal ?? (oomKilled || cause ? 'SIGKILL' : null),
      timedOut,
      oomKilled,
      durationMs: Date.now() - startedAt,
      ...(cause?.kind === 'reset' ? { restoredTo: cause.tag } : {}),
    }
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
    ...(pty
      ? {
          async resize(size: TerminalSize) {
            const checked = checkTerminalSize(size, 'size')
            if (ended) throw new SandstormError('failed_precondition', `process ${pid} has ended: its terminal is gone`)
            channel.resize(id, checked.cols, checked.rows)
          },
        }
      : {}),
  }
}

function startError(failure: StartFailure, options: ChildOptions): SandstormError {
  const { reason, errno, text } = failure
  switch (reason) {
    case 'cwd':
      return new SandstormError('invalid_argument', `cwd "${options.cwd}" is not a directory in the sandbox`)
    case 'terminalSize':
      return new SandstormError('invalid_argument', `pty: the sandbox's init refused the terminal size: ${text}`)
    case 'terminal': {
      const why = errno === constants.errno.ENOSPC ? `it holds ${maxSandboxTerminals} terminals already` : 'its /dev/pts/ptmx and /dev/ptmx are missing or not the ptmx device'
      return new SandstormError('failed_precondition', `the sandbox could not make a terminal (${text}): ${why}`)
    }
    case 'user':
      return new SandstormError('invalid_argument', `cannot run as uid ${options.uid}, gid ${options.gid}: ${text}`)
    case 'closed':
      return new SandstormError('failed_precondition', text)
    case 'fork':
      if (errno === constants.errno.EAGAIN) return new SandstormError('resource_exhausted', 'the sandbox is at its process limit (pidsMax): a command could not start')
      break
    case 'lost':
      return new SandstormError('unavailable', "the command did not start: its keeper in the sandbox was killed (by a process of the sandbox) before it ran")
    case 'silent':
      // Something in the sandbox stopped the keeper before it ran the command.
      return new SandstormError('unavailable', 'the command did not start within 10 s (a process in the sandbox stopped or held it before it ran); it was killed')
  }
  return new SandstormError('internal', `starting the command failed: ${text}`)
}
