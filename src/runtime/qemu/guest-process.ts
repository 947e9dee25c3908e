/**
 * A command in the guest, as the guest agent can run one: started detached by the exec wrapper
 * with its output in files, which are polled (from where the last read stopped) until it exits.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { SandstormError, type CallOptions, type ProcessResult } from '../../shared/index.js'
import type { ExecSpec, OutputSink, RuntimeProcess } from '../backend.js'
import type { GuestAgent } from './guest-agent.js'
import { execWrapper, guestBusybox } from './guest-scripts.js'

const pollMs = 20
const readChunk = 1 << 20

/** Why a VM sandbox offers no terminal (ExecSpec.pty). */
export const noGuestTerminals =
  "terminals (pty) are not offered on the qemu runtime yet: its guest agent (qemu-ga's guest-exec) takes a command's input only when it starts (input-data), not as a stream, so neither keystrokes nor resizes could reach a terminal in the guest; use a runc sandbox for a shell"

/** Starts `spec` in the guest; `baseEnv` (`K=V`) comes before the command's own variables. */
export async function startGuestProcess(agent: GuestAgent, baseEnv: string[], spec: ExecSpec, sink: OutputSink, call: CallOptions = {}): Promise<RuntimeProcess> {
  if (spec.pty) throw new SandstormError('failed_precondition', noGuestTerminals)
  const n = randomBytes(6).toString('hex')
  const out = `/run/sandstorm/exec-${n}.out`
  const err = `/run/sandstorm/exec-${n}.err`
  const home = spec.env.HOME ?? (spec.uid === 0 ? '/root' : '/')
  const env = [...baseEnv, `HOME=${home}`, ...Object.entries(spec.env).map(([k, v]) => `${k}=${v}`)]
  const startedAt = Date.now()
  const pid = await agent.exec(guestBusybox, ['sh', '-c', execWrapper, 'sandstorm-exec', spec.cwd, `${spec.uid}`, `${spec.gid}`, out, err, ...spec.argv], env, false)
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

  // Output goes to files in the guest; they are polled from where the last read stopped.
  const streams = [
    { path: out, handle: -1, offset: 0, emit: (c: Buffer) => sink.onStdout(c) },
    { path: err, handle: -1, offset: 0, emit: (c: Buffer) => sink.onStderr(c) },
  ]
  const drain = async () => {
    for (const s of streams) {
      if (s.handle < 0) s.handle = await agent.open(s.path, 'r').catch(() => -1)
      if (s.handle < 0) continue
      for (;;) {
        const r = await agent.read(s.handle, readChunk, s.offset)
        if (r.data.length > 0) {
          s.offset += r.data.length
          s.emit(r.data)
        }
        if (r.data.length < readChunk) break
      }
    }
  }
  const result = (async (): Promise<ProcessResult> => {
    let status
    for (;;) {
      status = await agent.status(pid)
      await drain()
      if (status.exited) break
      await sleep(pollMs)
    }
    await drain()
    ended = true
    clearTimeout(timer)
    call.signal?.removeEventListener('abort', onAbort)
    for (const s of streams) if (s.handle >= 0) await agent.closeFile(s.handle).catch(() => undefined)
    await agent.run(guestBusybox, ['rm', '-f', out, err]).catch(() => undefined)
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
