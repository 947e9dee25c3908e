import { SandstormError } from '../shared/index.js'

/**
 * How much of a request the server reads whole. JSON bodies (and each Connect message) are
 * parsed in memory, so they are capped: 8 MiB leaves room for an exec's stdin given inline
 * (base64); larger input goes through the stdin route. Files never count here: PUT .../files and
 * E2B's POST /files stream to the sandbox under the server's file limit (`maxFileBytes`).
 */
export const maxJsonBytes = 8 * 1024 * 1024

/** The bytes of a stream, failing with 413 once more than `maxBytes` have come (count after any gunzip, so that a small bomb is cut off too). */
export async function* capBytes(stream: AsyncIterable<Uint8Array>, maxBytes: number): AsyncGenerator<Uint8Array> {
  let total = 0
  for await (const chunk of stream) {
    total += chunk.byteLength
    if (total > maxBytes) throw new SandstormError('payload_too_large', `file too large: expected at most ${maxBytes} bytes in one file`)
    yield chunk
  }
}
