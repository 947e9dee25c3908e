import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { constants } from 'node:os'
import { mkdirSync, writeFileSync } from 'node:fs'
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
 * Each command runs under this one-liner of the sandbox's own read-only busybox (its path first).
 * An inner shell reports its pid (as the sandbox sees it) on fd 3, closes fd 3 and becomes the
 * command, in the foreground (stdin and signals as the command expects them); the outer one then
 * reports the exit status on fd 3. runc exec itself ends only once every holder of the output
 * pipes has closed them, which a daemon the command left running (`server &`) never does.
 */
const reportPidAndExit = 'b=$1; shift; "$b" sh -c \'echo $$ >&3; exec 3>&-; exec "$@"\' sandstorm-exec "$@"; s=$?; echo "exit $s" >&3; exit $s'

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
    args: [inSandbox.busybox, 'sh', '-c', reportPidAndExit, 'sandstorm-wrap', inSandbox.busybox, ...options.argv],
    env: options.env,
    cwd: options.cwd,
    uid: options.uid,
    gid: options.gid,
  })
  // Synchronous on purpose: three small writes and reads of microseconds each, which async would
  // queue in libuv's pool behind other work (a restored sandbox's old one being torn down).
  cgroup.createNow()
  // Only this path (a sandbox an earlier agent started) keeps process specs; made on first use.
  mkdirSync(options.execDir, { recursive: true, mode: 0o700 })
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

  const reports = lines(pidPipe)
  let pid: number
  try {
    pid = await readPid(reports)
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
    // runc exec also waits for its stdin to close: once the command has ended, nothing reads it.
    const reported = readExit(reports).then((code) => (code !== null && stdin.destroy(), code))
    const status = await commandEnd(exited, reported, () => cgroup.pidsNow().length > 0)
    clearTimeout(timer)
    options.killSignal?.removeEventListener('abort', onAbort)
    stdin.destroy()
    if (status.orphans) {
      // Children of the command hold the pipes: what they print later is read and dropped, so
      // that they do not die writing to a closed pipe. runc exec ends when they do.
      for (const [raw, out] of [[rawStdout, stdout], [rawStderr, stderr]] as const) {
        raw.unpipe(out)
        raw.resume()
      }
    } else {
      // runc has exited; what it copied last may still be on its way through the pipes.
      await Promise.all([rawStdout, rawStderr].map((r) => (r.closed ? undefined : once(r, 'close').catch(() => undefined))))
    }
    stdout.end()
    stderr.end()
    ended = true
    const exitCode = status.code
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

async function collect(stream: Readable): Promise<string> {
  let text = ''
  for await (const chunk of stream) text += String(chunk)
  return text
}

/** The lines the wrapper writes on fd 3, read one at a time. */
async function* lines(pipe: Readable): AsyncGenerator<string> {
  let text = ''
  for await (const chunk of pipe) {
    text += String(chunk)
    for (let at = text.indexOf('\n'); at >= 0; at = text.indexOf('\n')) {
      yield text.slice(0, at)
      text = text.slice(at + 1)
    }
  }
}

async function readPid(reports: AsyncGenerator<string>): Promise<number> {
  const { value, done } = await reports.next()
  if (done || !/^\d+$/.test(value)) throw new Error('no pid reported')
  return Number(value)
}

/** The status the wrapper reports once the command ended, or null when it was killed first. */
async function readExit(reports: AsyncGenerator<string>): Promise<number | null> {
  for await (const line of reports) {
    const m = /^exit (\d+)$/.exec(line)
    if (m) return Number(m[1])
  }
  return null
}

/**
 * When the command has ended. Most often runc exec exits at once after the wrapper reports: its
 * status is the command's. When children of the command still hold the output pipes, runc exec
 * goes on copying for them; once processes are still found in the command's cgroup after two
 * graces (the wrapper itself may take a moment to go), the report stands for the end, and the
 * output they wrote during the graces has been read.
 */
async function commandEnd(
  exited: Promise<[number | null, NodeJS.Signals | null]>,
  reported: Promise<number | null>,
  hasProcesses: () => boolean,
): Promise<{ code: number; orphans: boolean }> {
  const fromRunc = ([code, signal]: [number | null, NodeJS.Signals | null]) => ({ code: code ?? 128 + signalNumber(signal), orphans: false })
  const runcEnd = exited.then(fromRunc)
  const first = await Promise.race([runcEnd, reported.then((code) => ({ reportedCode: code }))])
  if ('code' in first) return first
  if (first.reportedCode === null) return runcEnd
  for (let seen = 0; seen < 2; ) {
    let timer: NodeJS.Timeout | undefined
    const grace = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), orphanOutputGraceMs)))
    const settled = await Promise.race([runcEnd, grace])
    clearTimeout(timer)
    if (settled) return settled
    // An empty cgroup: runc is only finishing its copy, and ends without a wait on anyone.
    if (!hasProcesses()) return runcEnd
    seen++
  }
  return { code: first.reportedCode, orphans: true }
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
