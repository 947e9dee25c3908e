/**
 * A JSON command channel over a unix socket, as QMP and the guest agent speak it: one command
 * at a time, answers in order, QMP's asynchronous events set aside.
 */
import { createConnection, type Socket } from 'node:net'
import { SandstormError } from '../../shared/index.js'

/** One connected channel. */
export interface JsonChannel {
  /** Sends one command and resolves with its `return`, or throws its `error` as a SandstormError. */
  call<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T>
  /** Sends a raw line without waiting for an answer (guest-sync's leading 0xff). */
  writeRaw(data: string | Uint8Array): void
  close(): void
  readonly closed: Promise<void>
}

/** The longest line taken from the guest agent: a file read comes back base64 in one line, in chunks of at most a few MiB. */
export const guestAgentMaxLine = 64 * 1024 * 1024
/**
 * The longest line taken from QMP: its answers here are status and a few hundred bytes. QEMU is
 * jailed but may be the guest's (see vm-jail.ts), and each VM's line is held in the agent's heap.
 */
export const qmpMaxLine = 1024 * 1024

interface Pending {
  resolve(v: unknown): void
  reject(e: Error): void
  timer?: NodeJS.Timeout
}

/** Connects to a QMP or guest agent socket; a line longer than `maxLineChars` ends the channel. */
export async function connectJsonChannel(path: string, what: string, maxLineChars: number): Promise<JsonChannel> {
  const socket: Socket = await new Promise((resolve, reject) => {
    const s = createConnection(path)
    s.once('connect', () => resolve(s))
    s.once('error', reject)
  })
  let buffer = ''
  const queue: Pending[] = []
  // Answers are matched to commands by order; a command that timed out still owns the next answer.
  let chain = Promise.resolve()
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.on('error', () => undefined)
  socket.on('close', () => {
    for (const p of queue.splice(0)) p.reject(new SandstormError('unavailable', `${what} channel closed before it answered`))
  })
  socket.on('data', (chunk: Buffer) => {
    // The guest agent may emit 0xff after guest-sync-delimited; drop it.
    const text = chunk.toString('utf8').replace(/\xff|\uFFFD/g, '')
    // What the guest's side of the channel sends is the guest's (root in a hostile guest can write
    // it): a line past the limit ends the channel, a chunk without a newline is not searched
    // again with all before it, and only an object is taken for an answer.
    buffer += text
    if (!text.includes('\n')) {
      if (buffer.length > maxLineChars) socket.destroy()
      return
    }
    let nl: number
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl).trim()
      buffer = buffer.slice(nl + 1)
      if (!line) continue
      let msg: Record<string, unknown>
      try {
        msg = JSON.parse(line) as Record<string, unknown>
      } catch {
        continue
      }
      if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) continue
      if ('event' in msg) continue
      if ('QMP' in msg) continue
      const p = queue.shift()
      if (!p) continue
      clearTimeout(p.timer)
      if ('error' in msg) {
        const e = (typeof msg.error === 'object' && msg.error !== null ? msg.error : {}) as { class?: unknown; desc?: unknown }
        p.reject(new SandstormError('internal', `${what}: ${String(e.desc ?? e.class ?? 'error').slice(0, 500)}`))
      } else p.resolve(msg.return)
    }
    if (buffer.length > maxLineChars) socket.destroy()
  })

  const channel: JsonChannel = {
    call<T>(command: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const p: Pending = { resolve: resolve as (v: unknown) => void, reject }
        chain = chain.then(() => {
          if (socket.destroyed) return reject(new SandstormError('unavailable', `${what} channel is closed`))
          queue.push(p)
          if (timeoutMs) {
            p.timer = setTimeout(() => reject(new SandstormError('deadline_exceeded', `${what} did not answer ${command} within ${timeoutMs} ms`)), timeoutMs)
          }
          socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n')
        })
      })
    },
    writeRaw: (data) => void socket.write(data),
    close: () => socket.destroy(),
    closed,
  }
  return channel
}
