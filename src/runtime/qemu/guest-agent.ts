/**
 * The in-guest agent (qemu-guest-agent on virtio-serial), as the host calls it: exec with
 * captured output, files by handle, the clock.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { SandstormError } from '../../shared/index.js'
import { guestBusybox, hostEpoch, setClockCommand } from './guest-scripts.js'
import { connectJsonChannel, guestAgentMaxLine, type JsonChannel } from './json-channel.js'

/** How long the backend's own commands in a guest (file calls, identity, network) may take. */
const guestRunTimeoutMs = 10 * 60_000

/** Status of a command started with guest-exec. */
export interface GuestExecStatus {
  exited: boolean
  exitcode?: number
  signal?: number
  'out-data'?: string
  'err-data'?: string
}

/** A connected guest agent. */
export interface GuestAgent {
  /** Starts a program (with `input` on its stdin, if given); returns the guest pid. The guest must answer within `timeoutMs`, if given. */
  exec(path: string, args: string[], env: string[], capture: boolean, input?: Uint8Array, timeoutMs?: number): Promise<number>
  /** The program's status; the guest must answer within `timeoutMs`, if given. */
  status(pid: number, timeoutMs?: number): Promise<GuestExecStatus>
  /** Runs a program to its end with captured output; deadline_exceeded past `timeoutMs` (@default 600000). */
  run(path: string, args: string[], env?: string[], input?: Uint8Array, timeoutMs?: number): Promise<{ exitCode: number; stdout: Buffer; stderr: Buffer }>
  open(path: string, mode: string): Promise<number>
  /** Reads up to `count` bytes at `offset`; eof when none are left. */
  read(handle: number, count: number, offset?: number): Promise<{ data: Buffer; eof: boolean }>
  write(handle: number, data: Uint8Array): Promise<void>
  closeFile(handle: number): Promise<void>
  /** Sets the guest clock to the host's. */
  setTime(): Promise<void>
  close(): void
}

/**
 * Connects once the agent answers: each attempt uses a fresh connection, since a command sent
 * before the guest opened its port may be lost and would misalign the answers after it.
 */
export async function connectGuestAgent(socketPath: string, timeoutMs: number, dead: () => boolean): Promise<GuestAgent> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (dead()) throw new SandstormError('unavailable', 'the VM exited before its guest agent answered')
    let channel: JsonChannel | null = null
    try {
      channel = await connectJsonChannel(socketPath, 'guest agent', guestAgentMaxLine)
      const id = Math.floor(Math.random() * 2 ** 31)
      const got = await channel.call<number>('guest-sync', { id }, 400)
      if (got === id) return wrap(channel)
      channel.close()
    } catch {
      channel?.close()
    }
    if (Date.now() > deadline) throw new SandstormError('deadline_exceeded', `the guest agent did not answer within ${timeoutMs} ms`)
    await sleep(50)
  }
}

/**
 * A guest agent that connects on its first call (a VM adopted from an earlier backend: listing
 * needs QMP alone, and a paused guest cannot answer). A failed connect is tried afresh next call.
 */
export function lazyGuestAgent(socketPath: string, timeoutMs: number, dead: () => boolean): GuestAgent {
  let real: Promise<GuestAgent> | null = null
  const get = () =>
    (real ??= connectGuestAgent(socketPath, timeoutMs, dead).catch((err: unknown) => {
      real = null
      throw err
    }))
  const forward =
    <K extends keyof GuestAgent>(k: K) =>
    async (...args: unknown[]) =>
      ((await get())[k] as (...a: unknown[]) => unknown)(...args)
  return {
    exec: forward('exec') as GuestAgent['exec'],
    status: forward('status') as GuestAgent['status'],
    run: forward('run') as GuestAgent['run'],
    open: forward('open') as GuestAgent['open'],
    read: forward('read') as GuestAgent['read'],
    write: forward('write') as GuestAgent['write'],
    closeFile: forward('closeFile') as GuestAgent['closeFile'],
    setTime: forward('setTime') as GuestAgent['setTime'],
    close: () => void real?.then((a) => a.close(), () => undefined),
  }
}

function wrap(channel: JsonChannel): GuestAgent {
  const agent: GuestAgent = {
    async exec(path, args, env, capture, input, timeoutMs) {
      const stdin = input ? { 'input-data': Buffer.from(input).toString('base64') } : {}
      const r = await channel.call<{ pid: number }>('guest-exec', { path, arg: args, env, 'capture-output': capture, ...stdin }, timeoutMs)
      return r.pid
    },
    status: (pid, timeoutMs) => channel.call<GuestExecStatus>('guest-exec-status', { pid }, timeoutMs),
    async run(path, args, env = [], input, timeoutMs = guestRunTimeoutMs) {
      // Every call of it is bounded: the guest's root can hold a command, or the agent, forever.
      const deadline = Date.now() + timeoutMs
      const left = () => Math.max(1, deadline - Date.now())
      const pid = await agent.exec(path, args, env, true, input, left())
      // Short waits: most commands the backend runs end within tens of milliseconds.
      for (let wait = 2; ; wait = Math.min(wait * 2, 10)) {
        const s = await agent.status(pid, left())
        if (s.exited) {
          return {
            exitCode: s.exitcode ?? 128 + (s.signal ?? 0),
            stdout: Buffer.from(s['out-data'] ?? '', 'base64'),
            stderr: Buffer.from(s['err-data'] ?? '', 'base64'),
          }
        }
        if (Date.now() >= deadline) throw new SandstormError('deadline_exceeded', `the guest did not finish ${path} within ${timeoutMs} ms`)
        await sleep(wait)
      }
    },
    open: (path, mode) => channel.call<number>('guest-file-open', { path, mode }),
    async read(handle, count, offset) {
      // A seek clears the stream's end-of-file mark, so a file that grows can be read again. The
      // read goes out behind it without waiting: the agent answers in order.
      const seek = offset === undefined ? undefined : channel.call('guest-file-seek', { handle, offset, whence: 'set' })
      const read = channel.call<{ count: number; 'buf-b64': string; eof: boolean }>('guest-file-read', { handle, count })
      const [, r] = await Promise.all([seek, read])
      return { data: Buffer.from(r['buf-b64'], 'base64'), eof: r.eof }
    },
    async write(handle, data) {
      await channel.call('guest-file-write', { handle, 'buf-b64': Buffer.from(data).toString('base64') })
    },
    async closeFile(handle) {
      await channel.call('guest-file-close', { handle })
    },
    async setTime() {
      const r = await agent.run(guestBusybox, ['sh', '-c', setClockCommand(1), 'sandstorm-clock', hostEpoch()])
      if (r.exitCode !== 0) throw new SandstormError('internal', `setting the guest clock failed: ${r.stderr.toString().trim()}`)
    },
    close: () => channel.close(),
  }
  return agent
}
