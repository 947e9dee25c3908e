/** The server name of a TLS ClientHello (RFC 8446 4.1.2, RFC 6066 3), read from the first bytes a client sends. */

/** What the bytes so far say: the name, that more bytes are needed, or that this is no ClientHello with a name. */
export type SniResult = { name: string } | { more: true } | { refused: string }

/** The longest ClientHello read (post-quantum key shares make them a few KiB). */
const maxHelloBytes = 64 * 1024

/** Reads the SNI from the start of a TLS stream (a ClientHello may span several records). */
export function readSni(data: Buffer): SniResult {
  // Reassemble the handshake bytes from the records seen so far.
  const parts: Buffer[] = []
  let offset = 0
  while (offset + 5 <= data.length) {
    if (data[offset] !== 0x16) return { refused: 'not a TLS handshake' }
    const length = data.readUInt16BE(offset + 3)
    if (offset + 5 + length > data.length) break
    parts.push(data.subarray(offset + 5, offset + 5 + length))
    offset += 5 + length
  }
  if (offset === 0 && data.length >= 1 && data[0] !== 0x16) return { refused: 'not a TLS handshake' }
  const handshake = Buffer.concat(parts)
  if (handshake.length < 4) return data.length > maxHelloBytes ? { refused: 'no ClientHello in the first 64 KiB' } : { more: true }
  if (handshake[0] !== 0x01) return { refused: 'the first handshake message is not a ClientHello' }
  const bodyLength = handshake.readUIntBE(1, 3)
  if (bodyLength > maxHelloBytes) return { refused: 'the ClientHello is too long' }
  if (handshake.length < 4 + bodyLength) return { more: true }
  const name = sniOf(handshake.subarray(4, 4 + bodyLength))
  return name === undefined ? { refused: 'the ClientHello names no server' } : { name }
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
