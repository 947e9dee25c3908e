/** A pass-through stream that checks a blob's sha256 and size before it lets the stream end. */
import { createHash } from 'node:crypto'
import { Transform } from 'node:stream'
import { SandstormError } from '../../shared/index.js'
import type { Digest } from '../contracts.js'

/**
 * Passes bytes through while hashing and counting them. It errors (`invalid_argument`) as soon as
 * more than `sizeBytes` came, and at the end when fewer came or their sha256 is not `digest`:
 * a consumer that keeps only what ended cleanly never keeps a tampered blob.
 */
export function verifyingStream(digest: Digest, sizeBytes: number): Transform {
  const hash = createHash('sha256')
  let seenBytes = 0
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seenBytes += chunk.length
      if (seenBytes > sizeBytes) {
        done(new SandstormError('invalid_argument', `blob ${digest}: expected ${sizeBytes} bytes, got more (${seenBytes} so far)`))
        return
      }
      hash.update(chunk)
      done(null, chunk)
    },
    flush(done) {
      if (seenBytes !== sizeBytes) {
        done(new SandstormError('invalid_argument', `blob ${digest}: expected ${sizeBytes} bytes, got ${seenBytes}`))
        return
      }
      const got = `sha256:${hash.digest('hex')}`
      if (got !== digest) {
        done(new SandstormError('invalid_argument', `blob ${digest}: its bytes hash to ${got} (the blob was altered or corrupted)`))
        return
      }
      done()
    },
  })
}

/** The sha256 digest of `bytes`. */
export function digestOf(bytes: Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}
