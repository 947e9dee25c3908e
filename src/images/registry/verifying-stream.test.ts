import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Writable } from 'node:stream'
import { describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import { digestOf, verifyingStream } from './verifying-stream.js'

const blob = Buffer.from('the bytes of a layer blob')

async function through(chunks: Buffer[], digest = digestOf(blob), size = blob.length): Promise<Buffer> {
  const out: Buffer[] = []
  await pipeline(Readable.from(chunks), verifyingStream(digest, size), new Writable({ write(chunk: Buffer, _e, done) { out.push(chunk); done() } }))
  return Buffer.concat(out)
}

const refusal = (says: string) => (err: unknown) => err instanceof SandstormError && err.code === 'invalid_argument' && err.message.includes(says)

describe('verifyingStream', () => {
  it('passes a blob that matches its digest and size', async () => {
    assert.deepEqual(await through([blob.subarray(0, 5), blob.subarray(5)]), blob)
  })
  it('errors on altered bytes, on too few and on too many', async () => {
    const altered = Buffer.from(blob)
    altered[0] ^= 1
    await assert.rejects(through([altered]), refusal('hash to'))
    await assert.rejects(through([blob.subarray(1)]), refusal(`expected ${blob.length} bytes, got ${blob.length - 1}`))
    await assert.rejects(through([blob, Buffer.from('x')]), refusal('got more'))
  })
})
