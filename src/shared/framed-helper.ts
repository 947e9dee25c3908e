/**
 * A client of a resident native helper that answers framed requests in order (native/nft-apply.c,
 * native/mount-move.c): both ways a 4-byte little-endian length and its bytes; an answer's bytes
 * are a status byte ('0' done, anything else refused) and a text. One process serves every
 * request, so none pays a process start; it is started on first use and again after it died, and
 * while idle it keeps no process alive.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { holdProcessOpen } from './child-hold.js'
import { SandstormError } from './errors.js'

/** A helper's answer to one request. */
export interface FramedAnswer {
  /** The helper did what was asked (status byte '0'). */
  ok: boolean
  /** Its output when ok, else why it refused. */
  text: string
}

/** Requests to one resident helper, answered in the order sent. */
export interface FramedHelper {
  /** Sends one request; rejects (`internal`) only when the helper could not run or died before answering. */
  call(body: Buffer): Promise<FramedAnswer>
  /** Ends the helper once it has answered what it was sent; a later call starts it again. */
  close(): void
}

type Child = ChildProcessByStdio<Writable, Readable, null>
interface Pending {
  resolve(answer: FramedAnswer): void
  reject(err: Error): void
}

/** A client of the helper binary at `path`; `name` says whose it is in errors. */
export function createFramedHelper(path: string, name: string): FramedHelper {
  /** The helper serving new requests, and what it was sent (a closed one answers its own, then exits). */
  let current: { child: Child; queue: Pending[] } | undefined

  const start = (): { child: Child; queue: Pending[] } => {
    const c = spawn(path, [], { stdio: ['pipe', 'pipe', 'inherit'] })
    const served = { child: c, queue: [] as Pending[] }
    let buffered = Buffer.alloc(0)
    const fail = (err: Error): void => {
      if (current === served) current = undefined
      for (const p of served.queue.splice(0)) p.reject(err)
    }
    c.on('error', (err) => fail(new SandstormError('internal', `the ${name} helper could not run: ${err.message}`, { cause: err })))
    // 'close', not 'exit': the answers it wrote last are read by then.
    c.on('close', (code, signal) => fail(new SandstormError('internal', `the ${name} helper exited (${signal ?? `code ${code}`})`)))
    c.stdin.on('error', () => undefined)
    c.stdout.on('data', (data: Buffer) => {
      buffered = Buffer.concat([buffered, data])
      while (buffered.length >= 4) {
        const length = buffered.readUInt32LE(0)
        if (buffered.length < 4 + length) break
        const frame = buffered.subarray(4, 4 + length)
        buffered = buffered.subarray(4 + length)
        served.queue.shift()?.resolve({ ok: frame[0] === 0x30, text: frame.subarray(1).toString('utf8') })
      }
      if (served.queue.length === 0) holdProcessOpen(c, false)
    })
    return served
  }

  return {
    call(body) {
      return new Promise<FramedAnswer>((resolve, reject) => {
        const served = (current ??= start())
        served.queue.push({ resolve, reject })
        // A request waited for keeps the process alive; an idle helper does not.
        holdProcessOpen(served.child, true)
        const head = Buffer.alloc(4)
        head.writeUInt32LE(body.length, 0)
        served.child.stdin.write(Buffer.concat([head, body]))
      })
    },
    close() {
      const served = current
      current = undefined
      served?.child.stdin.end()
    },
  }
}
