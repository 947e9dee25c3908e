/**
 * Base64 and byte joins with web APIs only, so that the SDK runs in browsers; under Node and Bun
 * their Buffer is used where present, as it decodes large output several times faster than atob.
 */

/** Buffer's few methods used here, looked up at run time so that nothing imports node:buffer. */
interface BufferLike {
  from(data: string, encoding: 'base64'): Uint8Array
  from(data: Uint8Array | string): { toString(encoding: 'base64'): string }
}

const nodeBuffer = (globalThis as { Buffer?: BufferLike }).Buffer

/** The bytes of a base64 string. */
export function bytesOfBase64(base64: string): Uint8Array {
  if (nodeBuffer) {
    const b = nodeBuffer.from(base64, 'base64')
    return new Uint8Array(b.buffer, b.byteOffset, b.length)
  }
  const binary = atob(base64)
  const out = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i)
  return out
}

/** Base64 of bytes, or of a string's UTF-8. */
export function base64Of(data: string | Uint8Array): string {
  if (nodeBuffer) return nodeBuffer.from(data).toString('base64')
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data
  let binary = ''
  // In slices: String.fromCharCode takes its bytes as arguments, and a call has a limit on those.
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(binary)
}

/** The chunks joined into one array. */
export function concatBytes(chunks: Uint8Array[]): Uint8Array {
  let length = 0
  for (const c of chunks) length += c.length
  const out = new Uint8Array(length)
  let at = 0
  for (const c of chunks) {
    out.set(c, at)
    at += c.length
  }
  return out
}
