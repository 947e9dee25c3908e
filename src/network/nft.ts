/**
 * The agent's line to nftables: one resident helper (native/nft-apply.c, libnftables) that
 * applies each ruleset it is given as one transaction, in the order given. A helper that dies is
 * started again on the next change.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { SandstormError, type Logger } from '../shared/index.js'

/** The helper's binary, built by `npm run build`. */
export const nftHelperPath = fileURLToPath(new URL('../../native/nft-apply', import.meta.url))

/** Applies rulesets atomically. */
export interface Nft {
  /** Applies `script` (as `nft -f` reads it) as one transaction; resolves with nft's output. */
  apply(script: string): Promise<string>
  /** Stops the helper; later calls start it again. */
  close(): void
}

interface Pending {
  resolve(output: string): void
  reject(err: Error): void
  script: string
}

/** A client of the helper, started on first use. */
export function createNft(logger: Logger): Nft {
  let child: ChildProcessByStdio<Writable, Readable, null> | undefined
  const queue: Pending[] = []
  let buffered = Buffer.alloc(0)

  const fail = (err: Error): void => {
    child = undefined
    buffered = Buffer.alloc(0)
    for (const p of queue.splice(0)) p.reject(err)
  }

  const start = (): ChildProcessByStdio<Writable, Readable, null> => {
    const c = spawn(nftHelperPath, [], { stdio: ['pipe', 'pipe', 'inherit'] })
    c.on('error', (err) => fail(new SandstormError('internal', `the nftables helper could not run: ${err.message}`, { cause: err })))
    c.on('exit', (code, signal) => {
      if (child !== c) return
      if (queue.length > 0) logger.error({ code, signal }, 'the nftables helper exited with changes pending')
      fail(new SandstormError('internal', `the nftables helper exited (${signal ?? `code ${code}`})`))
    })
    c.stdin.on('error', () => undefined)
    c.stdout.on('data', (data: Buffer) => {
      buffered = Buffer.concat([buffered, data])
      while (buffered.length >= 4) {
        const len = buffered.readUInt32LE(0)
        if (buffered.length < 4 + len) break
        const status = String.fromCharCode(buffered[4]!)
        const text = buffered.subarray(5, 4 + len).toString('utf8')
        buffered = buffered.subarray(4 + len)
        const done = queue.shift()
        if (!done) continue
        if (status === '0') done.resolve(text)
        else done.reject(new SandstormError('internal', `nftables refused a change: ${text.trim().split('\n')[0]}`, { cause: new Error(`${text}\n--- script ---\n${done.script}`) }))
      }
    })
    return c
  }

  return {
    apply(script) {
      return new Promise<string>((resolve, reject) => {
        child ??= start()
        queue.push({ resolve, reject, script })
        const body = Buffer.from(script, 'utf8')
        const head = Buffer.alloc(4)
        head.writeUInt32LE(body.length, 0)
        child.stdin.write(Buffer.concat([head, body]))
      })
    },
    close() {
      const c = child
      child = undefined
      c?.stdin.end()
    },
  }
}
