/**
 * A command in the guest, as the guest agent can run one: started detached by the exec wrapper
 * with its output in files, which are polled (from where the last read stopped) until it exits.
 *
 * The guest agent answers one command at a time, in order, so calls are pipelined: the host opens
 * both output files (creating them) before the command starts, and each poll sends the command's
 * status and the reads of both files in one go. The status goes first, so a poll that sees the
 * command exited has read everything it wrote. The wrapper unlinks the files once it has them as
 * its stdout and stderr: nothing is left to remove afterwards, and no other guest process can open
 * them by name while the command runs.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { SandstormError, type CallOptions, type ProcessResult } from '../../shared/index.js'
import type { ExecSpec, OutputSink, RuntimeProcess } from '../backend.js'
import type { GuestAgent, GuestExecStatus } from './guest-agent.js'
import { execWrapper, guestBusybox } from './guest-scripts.js'

/** Waits before each poll of the status: short at first (most commands end within milliseconds), then 20 ms. */
const pollWaitsMs = [1, 2, 4, 8, 16]
const longestPollMs = 20
const readChunk = 1 << 20

/** Why a VM sandbox offers no terminal (ExecSpec.pty). */
export const noGuestTerminals =
  "terminals (pty) are not offered on the qemu runtime yet: its guest agent (qemu-ga's guest-exec) takes a command's input only when it starts (input-data), not as a stream, so neither keystrokes nor resizes could reach a terminal in the guest; use a runc sandbox for a shell"

interface OutputFile {
  handle: number
  offset: number
  emit(chunk: Buffer): void
}

/** Closes what was opened of a command's output files and removes them: the command did not start. */
async function discardOutputs(agent: GuestAgent, handles: number[], paths: string[]): Promise<void> {
  await Promise.all(handles.filter((h) => h >= 0).map((h) => agent.closeFile(h).catch(() => undefined)))
  await agent.run(guestBusybox, ['rm', '-f', '--', ...paths]).catch(() => undefined)
}

/** Opens (creating) both output files at once; neither stays open if the other fails. */
async function openOutputs(agent: GuestAgent, paths: [string, string]): Promise<[number, number]> {
  const opened = await Promise.allSettled(paths.map((p) => agent.open(p, 'a+')))
  const handles = opened.map((r) => (r.status === 'fulfilled' ? r.value : -1))
  const failed = opened.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (!failed) return handles as [number, number]
  await discardOutputs(agent, handles, paths)
  // The guest agent's answer is the guest's own text (a hostile guest writes what it likes): the
  // client gets a fixed message, and the guest's reason stays in the cause, for the log.
  throw new SandstormError('unavailable', "the guest could not make the command's output files", { cause: failed.reason })
}

/** Reads what each file gained since the last read; all reads go out at once. */
async function readNew(agent: GuestAgent, files: OutputFile[]): Promise<void> {
  let pending = files
  while (pending.length > 0) {
    const reads = await Promise.all(pending.map((f) => agent.read(f.handle, readChunk, f.offset)))
    pending = pending.filter((f, i) => {
      const data = reads[i]!.data
      if (data.length === 0) return false
      f.offset += data.length
      f.emit(data)
      return data.length === readChunk
    })
  }
}

/** Starts `spec` in the guest; `baseEnv` (`K=V`) comes before the command's own variables. */
export async function startGuestProcess(agent: GuestAgent, baseEnv: string[], spec: ExecSpec, sink: OutputSink, call: CallOptions = {}): Promise<RuntimeProcess> {
  if (spec.pty) throw new SandstormError('failed_precondition', noGuestTerminals)
  const n = randomBytes(6).toString('hex')
  const paths: [string, string] = [`/run/sandstorm/exec-${n}.out`, `/run/sandstorm/exec-${n}.err`]
  const home = spec.env.HOME ?? (spec.uid === 0 ? '/root' : '/')
  const env = [...baseEnv, `HOME=${home}`, ...Object.entries(spec.env).map(([k, v]) => `${k}=${v}`)]
  const startedAt = Date.now()
  const [outHandle, errHandle] = await openOutputs(agent, paths)
  const files: OutputFile[] = [
    { handle: outHandle, offset: 0, emit: (c) => sink.onStdout(c) },
    { handle: errHandle, offset: 0, emit: (c) => sink.onStderr(c) },
  ]
  const closeFiles = () => Promise.all(files.map((f) => agent.closeFile(f.handle).catch(() => undefined)))
  let pid: number
  try {
    pid = await agent.exec(guestBusybox, ['sh', '-c', execWrapper, 'sandstorm-exec', spec.cwd, `${spec.uid}`, `${spec.gid}`, ...paths, ...spec.argv], env, false)
  } catch (err) {
    await discardOutputs(agent, [outHandle, errHandle], paths)
    throw err
  }
  let sentSignal: NodeJS.Signals | null = null
  let timedOut = false
  let ended = false
  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (ended) return
    sentSignal = signal
    await agent.run(guestBusybox, ['kill', `-${signal.replace(/^SIG/, '')}`, '--', `-${pid}`]).catch(() => undefined)
  }
  const timer = spec.timeoutMs ? setTimeout(() => ((timedOut = true), void kill('SIGKILL')), spec.timeoutMs) : undefined
  const onAbort = () => void kill('SIGKILL')
  call.signal?.addEventListener('abort', onAbort, { once: true })

  const result = (async (): Promise<ProcessResult> => {
    let status: GuestExecStatus
    try {
      let readAt = Date.now()
      for (let poll = 0; ; poll++) {
        await sleep(pollWaitsMs[poll] ?? longestPollMs)
        // Sent before the reads: once it says exited, the reads after it hold all the command wrote.
        const statusNow = agent.status(pid)
        // Each call takes the guest's CPU from the command: while it runs, its output is read every
        // 20 ms, as before, and only its status more often. Both are awaited together, so that a
        // channel that closes under them (the VM destroyed) fails the result with neither unheard.
        const readNow = Date.now() - readAt >= longestPollMs
        ;[status] = await Promise.all([statusNow, readNow ? readNew(agent, files) : undefined])
        if (status.exited) {
          if (!readNow) await readNew(agent, files)
          break
        }
        if (readNow) readAt = Date.now()
      }
    } finally {
      ended = true
      clearTimeout(timer)
      call.signal?.removeEventListener('abort', onAbort)
      // Not waited for: the next call to the guest queues behind these.
      void closeFiles()
    }
    const exitCode = status.exitcode ?? 128 + (status.signal ?? 0)
    return { exitCode, signal: sentSignal, timedOut, oomKilled: false, durationMs: Date.now() - startedAt }
  })()
  return {
    pid,
    result,
    writeStdin: async () => {
      throw new SandstormError('failed_precondition', 'stdin of a VM sandbox process is not supported: the guest agent takes input only at start')
    },
    closeStdin: () => undefined,
    kill,
  }
}
