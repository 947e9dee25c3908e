import { constants } from 'node:os'
import type { Socket } from 'node:net'

/** Frame types to the sandbox's init (see native/sandbox-init.c). */
const toInit = { exec: 1, kill: 2, stdin: 3, stdinClose: 4, pause: 5, resume: 6, execPty: 7, resize: 8, reset: 9 } as const
/** Frame types from it. */
const fromInit = { started: 1, failed: 2, stdout: 3, stderr: 4, ack: 5, exit: 6, stdinGone: 7, ready: 8, reset: 9 } as const

/** Why the init could not start a command: FAILED's first byte (F_* in native/sandbox-init.c). */
const startFailureReasons = ['request', 'terminalSize', 'terminal', 'pipe', 'fork', 'cwd', 'user', 'silent', 'lost'] as const
/** Why EXIT's command ended, beyond its status: the byte after it (E_* in native/sandbox-init.c). */
const exitCauses = { reset: 1, keeperKilled: 2 } as const

/**
 * Why a command did not start. `silent`: its keeper never reported that it started (something in
 * the sandbox stopped it); the init killed it with all it started. `lost`: its keeper died before
 * it reported. `closed`: the channel to the init was not open. `unknown`: an init that gave no
 * reason (one older than the reasons), with its text alone.
 */
export type StartFailureReason = (typeof startFailureReasons)[number] | 'closed' | 'unknown'

/** A command the init could not start: why, the errno it met (0: none), and a text for people. */
export interface StartFailure {
  reason: StartFailureReason
  errno: number
  text: string
}

/**
 * Why a command ended, where its status does not say it all: a `reset` (given `tag`, a restore's
 * snapshot id) killed it, or its keeper was killed (by something in the sandbox), and the init
 * killed the command and all it started with it.
 */
export type ExitCause = { kind: 'reset'; tag: string } | { kind: 'keeperKilled' }

/** Frames larger than this end the channel: the init never sends them (it reads 64 KiB at a time). */
const maxFrame = 1 << 20
/** Each frame: u32 length of what follows, u8 type, u32 command id. */
const headerBytes = 9

/** A command as the init starts it. */
export interface InitRequest {
  argv: string[]
  env: string[]
  cwd: string
  uid: number
  gid: number
  /** Runs it on a new terminal of this size made by the init (cols and rows 1..65535). */
  pty?: { cols: number; rows: number }
}

/** What the init says of one command, in this order: started or failed, output, exit. */
export interface CommandEvents {
  started(pid: number): void
  failed(failure: StartFailure): void
  stdout(data: Buffer): void
  stderr(data: Buffer): void
  /** The init wrote this many bytes of stdin into the command's pipe. */
  ack(bytes: number): void
  /** The command's stdin is closed: it exited, or closed it itself. */
  stdinGone(): void
  /** The command ended (128 + n when signal n killed it); also when the channel is lost (137). */
  exit(status: number, cause?: ExitCause): void
}

/** The agent's end of the socket it handed the sandbox's init at `runc run`. */
export interface InitChannel {
  readonly open: boolean
  /**
   * Resolves with the length (in instructions) of the seccomp filter the init loaded, once it
   * serves this channel; rejects if the channel ends first (the init refused to run unfiltered).
   */
  readonly ready: Promise<number>
  /** Starts a command. Returns its id. */
  start(request: InitRequest, events: CommandEvents): number
  /** Signals every process the command started (all descendants of its keeper). */
  kill(id: number, signal: number): void
  stdin(id: number, data: Uint8Array): void
  closeStdin(id: number): void
  pause(id: number): void
  resume(id: number): void
  /** Sets the size of a command's terminal (ignored by the init for a command without one). */
  resize(id: number, cols: number, rows: number): void
  /**
   * Has the init kill and reap every other process of the sandbox, ending every command (each
   * told the cause `{ kind: 'reset', tag }`). Resolves with how many processes were left when the init stopped waiting
   * (0: none); rejects if the channel ends first.
   */
  reset(tag: string): Promise<number>
  close(): void
}

/**
 * Speaks the init's frame protocol over the socket. Everything read here comes from inside the
 * sandbox: frames are bounded, unknown ids are ignored, and a malformed stream ends the channel
 * (the agent's next command then attaches a new one).
 */
export function createInitChannel(socket: Socket): InitChannel {
  const commands = new Map<number, CommandEvents>()
  const resets = new Map<number, { resolve(left: number): void; reject(err: Error): void }>()
  // The tag of the last reset asked for: the commands it ends are reported before its answer.
  let resetTag = ''
  let nextId = 1
  let open = true
  let isReady = false
  let onReady!: (instructions: number) => void
  let onLost!: (err: Error) => void
  const ready = new Promise<number>((resolve, reject) => ((onReady = resolve), (onLost = reject)))
  ready.catch(() => undefined)
  let pending: Buffer = Buffer.alloc(0)

  // A sandbox outlives an agent that exits: the socket holds the agent's event loop only while
  // the init's first word or a command is waited for.
  const holdLoop = () => (!isReady || commands.size > 0 ? socket.ref() : socket.unref())
  const forget = (id: number) => {
    commands.delete(id)
    holdLoop()
  }
  socket.on('error', () => undefined)
  socket.on('close', () => lose())
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk
    while (pending.length >= headerBytes) {
      const length = pending.readUInt32LE(0)
      if (length < headerBytes - 4 || length > maxFrame + headerBytes) return lose()
      if (pending.length < 4 + length) break
      receive(pending[4]!, pending.readUInt32LE(5), pending.subarray(headerBytes, 4 + length))
      pending = pending.subarray(4 + length)
    }
  })

  function receive(type: number, id: number, payload: Buffer) {
    if (type === fromInit.reset && payload.length >= 4) {
      resets.get(id)?.resolve(payload.readUInt32LE(0))
      return resets.delete(id)
    }
    if (type === fromInit.ready && payload.length >= 4) {
      isReady = true
      holdLoop()
      return onReady(payload.readUInt32LE(0))
    }
    const events = commands.get(id)
    if (!events) return
    // These carry a number: one too short to hold it is the init speaking out of turn.
    if ((type === fromInit.started || type === fromInit.ack || type === fromInit.exit) && payload.length < 4) return lose()
    switch (type) {
      case fromInit.started:
        return events.started(payload.readUInt32LE(0))
      case fromInit.failed:
        forget(id)
        return events.failed(startFailure(payload))
      case fromInit.stdout:
        return events.stdout(Buffer.from(payload))
      case fromInit.stderr:
        return events.stderr(Buffer.from(payload))
      case fromInit.ack:
        return events.ack(payload.readUInt32LE(0))
      case fromInit.stdinGone:
        return events.stdinGone()
      case fromInit.exit:
        forget(id)
        return events.exit(payload.readUInt32LE(0), exitCause(payload[4]))
    }
  }

  function exitCause(byte: number | undefined): ExitCause | undefined {
    if (byte === exitCauses.reset) return { kind: 'reset', tag: resetTag }
    if (byte === exitCauses.keeperKilled) return { kind: 'keeperKilled' }
    return undefined
  }

  /** The init died with its sandbox, or spoke out of turn: every command still open ends. */
  function lose() {
    if (!open) return
    open = false
    onLost(new Error("the channel to the sandbox's init ended"))
    socket.destroy()
    const left = [...commands.values()]
    commands.clear()
    for (const waiting of resets.values()) waiting.reject(new Error("the channel to the sandbox's init ended"))
    resets.clear()
    for (const events of left) {
      events.stdinGone()
      events.exit(137)
    }
  }

  function send(type: number, id: number, payload?: Uint8Array) {
    if (!open) return
    const head = Buffer.alloc(headerBytes)
    head.writeUInt32LE(headerBytes - 4 + (payload?.length ?? 0), 0)
    head[4] = type
    head.writeUInt32LE(id, 5)
    socket.write(payload?.length ? Buffer.concat([head, payload]) : head)
  }

  return {
    get open() {
      return open
    },
    ready,
    start(request, events) {
      const id = nextId++
      const numbers = Buffer.alloc(16)
      numbers.writeUInt32LE(request.uid, 0)
      numbers.writeUInt32LE(request.gid, 4)
      numbers.writeUInt32LE(request.argv.length, 8)
      numbers.writeUInt32LE(request.env.length, 12)
      const strings = [request.cwd, ...request.argv, ...request.env].map((s) => Buffer.from(`${s}\0`))
      const size = request.pty ? [cells(request.pty.cols, request.pty.rows)] : []
      commands.set(id, events)
      holdLoop()
      send(request.pty ? toInit.execPty : toInit.exec, id, Buffer.concat([...size, numbers, ...strings]))
      if (!open) queueMicrotask(() => (forget(id), events.failed({ reason: 'closed', errno: 0, text: 'the sandbox is not running' })))
      return id
    },
    kill(id, signal) {
      const number = Buffer.alloc(4)
      number.writeUInt32LE(signal)
      send(toInit.kill, id, number)
    },
    stdin(id, data) {
      for (let at = 0; at < data.length; at += maxFrame / 2) send(toInit.stdin, id, data.subarray(at, at + maxFrame / 2))
    },
    closeStdin: (id) => send(toInit.stdinClose, id),
    pause: (id) => send(toInit.pause, id),
    resume: (id) => send(toInit.resume, id),
    resize: (id, cols, rows) => send(toInit.resize, id, cells(cols, rows)),
    reset(tag) {
      if (!open) return Promise.reject(new Error("the channel to the sandbox's init ended"))
      resetTag = tag
      const id = nextId++
      const answer = new Promise<number>((resolve, reject) => resets.set(id, { resolve, reject }))
      socket.ref()
      send(toInit.reset, id)
      return answer.finally(holdLoop)
    },
    close: lose,
  }
}

/**
 * FAILED's payload: u8 reason, u32 errno, text. An init older than the reasons (a sandbox started
 * before an upgrade keeps its own) sent text alone, `<what>: <strerror>`: it starts with a letter,
 * never a reason's byte, and its `what` says the reason.
 */
function startFailure(payload: Buffer): StartFailure {
  const reason = payload.length >= 5 ? startFailureReasons[payload[0]! - 1] : undefined
  if (reason) return { reason, errno: payload.readUInt32LE(1), text: payload.subarray(5).toString('utf8') }
  const text = payload.toString('utf8')
  const errno = text.endsWith('Resource temporarily unavailable') ? constants.errno.EAGAIN : text.endsWith('No space left on device') ? constants.errno.ENOSPC : 0
  return { reason: legacyFailures.get(text.slice(0, Math.max(0, text.indexOf(':')))) ?? 'unknown', errno, text }
}

/** The `what` of an older init's FAILED text, by reason. */
const legacyFailures = new Map<string, StartFailureReason>([
  ['cwd', 'cwd'],
  ['user', 'user'],
  ['terminal size', 'terminalSize'],
  ['terminal', 'terminal'],
  ['fork', 'fork'],
  ['pipe', 'pipe'],
  ['start', 'request'],
])

/** A terminal size as the init reads it: u16 cols, u16 rows. */
function cells(cols: number, rows: number): Buffer {
  if (![cols, rows].every((n) => Number.isInteger(n) && n >= 1 && n <= 0xffff)) throw new RangeError(`a terminal size is 1..65535 cells each way, got ${cols}x${rows}`)
  const b = Buffer.alloc(4)
  b.writeUInt16LE(cols, 0)
  b.writeUInt16LE(rows, 2)
  return b
}

/** Whether a request fits one frame (argv and env of a command are far smaller in practice). */
export function requestFits(request: InitRequest): boolean {
  const bytes = [request.cwd, ...request.argv, ...request.env].reduce((n, s) => n + Buffer.byteLength(s) + 1, request.pty ? 20 : 16)
  return bytes <= maxFrame
}
