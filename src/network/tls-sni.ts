/** The server name of a TLS ClientHello (RFC 8446 4.1.2, RFC 6066 3), read from the first bytes a client sends. */

/** What the bytes so far say: the name, that more bytes are needed, or that this is no ClientHello with a name. */
export type SniResult = { name: string } | { more: true } | { refused: string }

/** The longest ClientHello read (post-quantum key shares make them a few KiB). */
const maxHelloBytes = 64 * 1024

/** Reads the SNI from the first bytes of a TLS stream, given whole. */
export function readSni(data: Buffer): SniResult {
  return createSniReader().push(data)
}

/** Reads the SNI of one TLS stream as its bytes arrive. */
export interface SniReader {
  /** The next bytes of the stream: what all of them so far say. */
  push(chunk: Buffer): SniResult
}

/**
 * A reader that looks at each byte a bounded number of times, however the stream is cut: a
 * ClientHello sent a byte per segment, or in records of no bytes, costs time linear in its length
 * (reassembling everything on every chunk cost the square of it, on the agent's one thread).
 */
export function createSniReader(): SniReader {
  /** Bytes of the record being received (its header included), not yet split off. */
  let pending: Buffer[] = []
  let pendingBytes = 0
  /** The current record's length with its header, once its header is in; 0 before. */
  let recordBytes = 0
  /** The handshake bytes of the records received whole. */
  const handshake: Buffer[] = []
  let handshakeBytes = 0
  /** The ClientHello's length with its 4-byte header, once known. */
  let helloBytes = 0
  let seen = 0

  const flatten = (): Buffer => {
    const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes)
    pending = [all]
    return all
  }

  return {
    push(chunk) {
      if (seen === 0 && chunk.length > 0 && chunk[0] !== 0x16) return { refused: 'not a TLS handshake' }
      seen += chunk.length
      pending.push(chunk)
      pendingBytes += chunk.length
      for (;;) {
        if (recordBytes === 0) {
          if (pendingBytes < 5) break
          const head = flatten()
          if (head[0] !== 0x16) return { refused: 'not a TLS handshake' }
          recordBytes = 5 + head.readUInt16BE(3)
        }
        if (pendingBytes < recordBytes) break
        const all = flatten()
        handshake.push(all.subarray(5, recordBytes))
        handshakeBytes += recordBytes - 5
        const rest = all.subarray(recordBytes)
        pending = rest.length > 0 ? [rest] : []
        pendingBytes = rest.length
        recordBytes = 0
      }
      if (helloBytes === 0) {
        if (handshakeBytes < 4) return seen > maxHelloBytes ? { refused: 'no ClientHello in the first 64 KiB' } : { more: true }
        const start = Buffer.concat(handshake, handshakeBytes)
        handshake.splice(0, handshake.length, start)
        if (start[0] !== 0x01) return { refused: 'the first handshake message is not a ClientHello' }
        const bodyLength = start.readUIntBE(1, 3)
        if (bodyLength > maxHelloBytes) return { refused: 'the ClientHello is too long' }
        helloBytes = 4 + bodyLength
      }
      if (handshakeBytes < helloBytes) return { more: true }
      const hello = Buffer.concat(handshake, handshakeBytes)
      const name = sniOf(hello.subarray(4, helloBytes))
      return name === undefined ? { refused: 'the ClientHello names no server' } : { name }
    },
  }
}

/** The host_name of the server_name extension of a ClientHello body, or undefined. */
function sniOf(body: Buffer): string | undefined {
  let at = 2 + 32
  if (at + 1 > body.length) return undefined
  at += 1 + body[at]! // session id
  if (at + 2 > body.length) return undefined
  at += 2 + body.readUInt16BE(at) // cipher suites
  if (at + 1 > body.length) return undefined
  at += 1 + body[at]! // compression methods
  if (at + 2 > body.length) return undefined
  const end = Math.min(body.length, at + 2 + body.readUInt16BE(at))
  at += 2
  while (at + 4 <= end) {
    const type = body.readUInt16BE(at)
    const length = body.readUInt16BE(at + 2)
    const data = body.subarray(at + 4, at + 4 + length)
    at += 4 + length
    if (type !== 0 || data.length < 2) continue
    let p = 2
    while (p + 3 <= data.length) {
      const nameType = data[p]!
      const nameLength = data.readUInt16BE(p + 1)
      const name = data.subarray(p + 3, p + 3 + nameLength)
      p += 3 + nameLength
      if (nameType === 0 && name.length === nameLength) return name.toString('ascii').toLowerCase()
    }
  }
  return undefined
}
