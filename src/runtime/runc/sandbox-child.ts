import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { constants } from 'node:os'
import { writeFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough, type Readable, type Writable } from 'node:stream'
import { SandstormError, type ProcessResult } from '../../shared/index.js'
import type { RuntimeProcess } from '../backend.js'
import { execCgroup, oomKillCountNow } from './cgroups.js'
import { inSandbox } from './layout.js'
import { buildProcessSpec } from './oci-spec.js'
import { lastLine, type RuncCli } from './runc-cli.js'

/** A command to start inside a sandbox through `runc exec`. */
export interface ChildOptions {
  sandboxId: string
  /** Host directory for the process spec (never inside the sandbox's root). */
  execDir: string
  argv: string[]
  env: string[]
  cwd: string
  uid: number
  gid: number
  /** Kills the whole process tree after this long. */
  timeoutMs?: number
  /** Kills the whole process tree when it fires. */
  killSignal?: AbortSignal
}

/** A started command with its raw output streams. */
export interface SandboxChild extends RuntimeProcess {
  readonly stdout: Readable
  readonly stderr: Readable
}

/**
 * The first thing each command runs is this one-liner of the sandbox's own read-only busybox: it
 * reports its pid (as the sandbox sees it) on fd 3, closes fd 3 and becomes the command.
 */
const reportPid = 'echo $$ >&3; exec 3>&-; exec "$@"'

/** How long output is still read after a command ended while its children hold the pipes. */
const orphanOutputGraceMs = 100

/**
 * Starts a command inside a sandbox: `runc exec` into a per-command freezer cgroup, so that the
 * command's whole tree can be killed, with stdio piped to us and its pid reported on fd 3.
 */
export async function startSandboxChild(runc: RuncCli, options: ChildOptions): Promise<SandboxChild> {
  const name = `x${randomBytes(6).toString('hex')}`
  const cgroup = execCgroup(options.sandboxId, name)
  const specFile = join(options.execDir, `${name}.json`)
  const spec = buildProcessSpec({
    args: [inSandbox.busybox, 'sh', '-c', reportPid, 'sandstorm-exec', ...options.argv],
    env: options.env,
    cwd: options.cwd,
    uid: options.uid,
    gid: options.gid,
  })
  // Synchronous on purpose: three small writes and reads of microseconds each, which async would
  // queue in libuv's pool behind other work (a restored sandbox's old one being torn down).
  cgroup.createNow()
  writeFileSync(specFile, JSON.stringify(spec), { mode: 0o600 })
  const oomBefore = oomKillCountNow(options.sandboxId)
  const startedAt = Date.now()

  const child = spawn(
    runc.binary,
    [...runc.baseArgs, 'exec', '--process', specFile, '--cgroup', cgroup.runcArg, '--preserve-fds', '1', options.sandboxId],
    { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] },
  )
  const [stdin, rawStdout, rawStderr, pidPipe] = child.stdio as unknown as [Writable, Readable, Readable, Readable]
  const stdout = held(rawStdout)
  const stderr = held(rawStderr)
  stdin.on('error', () => undefined) // a command that exits without reading its stdin is not an error
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>

  let pid: number
  try {
    pid = await readPid(pidPipe)
  } catch {
    // runc failed before the command started: its reason is the last line on stderr.
    const errText = await collect(stderr)
    await exited
    await Promise.all([rm(specFile, { force: true }), cgroup.remove()])
    throw startError(errText, options)
  }
  void rm(specFile, { force: true })

  let sentSignal: NodeJS.Signals | null = null
  let timedOut = false
  const killTree = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (ended) return
    sentSignal = signal
    await cgroup.signalAll(signal)
  }
  let ended = false
  const timer = options.timeoutMs
    ? setTimeout(() => {
        timedOut = true
        void killTree('SIGKILL')
      }, options.timeoutMs)
    : undefined
  const onAbort = () => void killTree('SIGKILL')
  options.killSignal?.addEventListener('abort', onAbort, { once: true })

  const result = (async (): Promise<ProcessResult> => {
    const [code, runcSignal] = await exited
    clearTimeout(timer)
    options.killSignal?.removeEventListener('abort', onAbort)
    await drain(rawStdout, rawStderr, cgroup.pidsNow().length > 0)
    // After an orphan held the pipes, the raw streams were cut without an end: end ours.
    stdout.end()
    stderr.end()
    ended = true
    const exitCode = code ?? 128 + signalNumber(runcSignal)
    const oomKilled = exitCode === 137 && oomKillCountNow(options.sandboxId) > oomBefore
    void cgroup.remove()
    return {
      exitCode,
      signal: sentSignal ?? (oomKilled ? 'SIGKILL' : null),
      timedOut,
      oomKilled,
      durationMs: Date.now() - startedAt,
    }
  })()

  return {
    pid,
    stdout,
    stderr,
    result,
    async writeStdin(data: Uint8Array) {
      const closed = () => new SandstormError('failed_precondition', 'stdin of this process is closed')
      if (stdin.destroyed || stdin.writableEnded) throw closed()
      // A command that exits without reading breaks the pipe (EPIPE): that is a closed stdin,
      // and callers such as file writes turn it into the command's own error.
      try {
        if (!stdin.write(data)) await Promise.race([once(stdin, 'drain'), once(stdin, 'close').then(() => Promise.reject(closed()))])
      } catch {
        throw closed()
      }
    },
    closeStdin() {
      stdin.end()
    },
    kill: killTree,
  }
}

/**
 * A child's output, read from its start and kept until a consumer reads it: Node resumes a
 * child's unread pipes once it exits, dropping what they hold, and a quick command can exit
 * before our caller has attached. A consumer that stops reading lets the rest drain away.
 */
function held(raw: Readable): PassThrough {
  const out = raw.pipe(new PassThrough())
  out.once('close', () => raw.resume())
  return out
}

async function readPid(pipe: Readable): Promise<number> {
  let text = ''
  for await (const chunk of pipe) {
    text += String(chunk)
    const line = /^(\d+)\n/.exec(text)
    if (line) {
      pipe.destroy()
      return Number(line[1])
    }
  }
  throw new Error('no pid reported')
}

async function collect(stream: Readable): Promise<string> {
  let text = ''
  for await (const chunk of stream) text += String(chunk)
  return text
}

/**
 * Waits until the output pipes close. When the command left children that still hold them
 * (`sleep 100 &`), output written so far is read during a short grace, then we stop reading.
 */
async function drain(stdout: Readable, stderr: Readable, orphansHoldPipes: boolean): Promise<void> {
  const closed = Promise.all([stdout, stderr].map((s) => (s.closed ? undefined : once(s, 'close').catch(() => undefined))))
  if (!orphansHoldPipes) {
    await closed
    return
  }
  let timer: NodeJS.Timeout | undefined
  await Promise.race([closed, new Promise((r) => (timer = setTimeout(r, orphanOutputGraceMs)))])
  clearTimeout(timer)
  stdout.destroy()
  stderr.destroy()
}

function startError(stderr: string, options: ChildOptions): SandstormError {
  const reason = lastLine(stderr)
  if (/chdir|cwd/i.test(reason)) {
    return new SandstormError('invalid_argument', `cwd "${options.cwd}" is not a directory in the sandbox`)
  }
  if (/container .* is not running|not running|stopped container|does not exist|paused/i.test(reason)) {
    return new SandstormError('failed_precondition', `the sandbox is not running: ${reason}`)
  }
  return new SandstormError('internal', `starting the command failed: ${reason || 'runc exec failed'}`)
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal ? (constants.signals[signal] ?? 0) : 0
}
