import assert from 'node:assert/strict'
import { tmpdir } from 'node:os'
import { describe, it } from 'node:test'
import { withinHostSpace } from './host-space.js'

async function* chunks(n: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < n; i++) yield new Uint8Array(1024)
}

async function drain(data: AsyncIterable<Uint8Array>): Promise<number> {
  let bytes = 0
  for await (const chunk of data) bytes += chunk.byteLength
  return bytes
}

describe('withinHostSpace', () => {
  it('passes an upload that fits in the free space through whole', async () => {
    assert.equal(await drain(await withinHostSpace(tmpdir(), chunks(4), 0)), 4096)
  })

  it('refuses at once, with resource_exhausted, when the margin is more than what is free', async () => {
    await assert.rejects(withinHostSpace(tmpdir(), chunks(1), Number.MAX_SAFE_INTEGER), { code: 'resource_exhausted', message: /disk is full/ })
  })
})
