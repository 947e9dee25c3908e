/** Reading a small untrusted response body whole, with a ceiling on its size. */
import { SandstormError } from '../../shared/index.js'

/** The body of `response`, refused (`invalid_argument`) past `maxBytes`; `what` names it in messages. */
export async function readLimited(response: Response, maxBytes: number, what: string): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length') ?? NaN)
  if (declared > maxBytes) {
    await response.body?.cancel().catch(() => {})
    throw new SandstormError('invalid_argument', `${what}: expected at most ${maxBytes} bytes, got a body of ${declared}`)
  }
  const chunks: Buffer[] = []
  let total = 0
  if (response.body) {
    for await (const chunk of response.body) {
      total += chunk.length
      if (total > maxBytes) {
        await response.body.cancel().catch(() => {})
        throw new SandstormError('invalid_argument', `${what}: expected at most ${maxBytes} bytes, got more`)
      }
      chunks.push(Buffer.from(chunk))
    }
  }
  return Buffer.concat(chunks)
}
