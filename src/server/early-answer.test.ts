import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { maxJsonBytes } from './body-limits.js'
import { startTestServer, type TestServer } from './test-server.fixture.js'

describe('an answer that goes out before its request has all arrived', () => {
  let t: TestServer
  before(async () => {
    t = await startTestServer()
  })
  after(async () => {
    await t.close()
  })

  const json = { 'content-type': 'application/json' }
  // Past the JSON cap, in chunks (no declared length): the route reads up to the cap and stops.
  const tooMuch = (): Buffer[] => Array.from({ length: (maxJsonBytes + 4 * 1024 * 1024) / (64 * 1024) }, () => Buffer.alloc(64 * 1024, 0x20))

  it('closes its connection when the route stopped reading the body part way: the rest would stall the next request on it', async () => {
    const chunked = await t.request('POST', '/v1/sandboxes', { chunks: tooMuch(), headers: json, keepAlive: true })
    assert.equal(chunked.status, 413)
    assert.equal(chunked.headers.connection, 'close')
    assert.equal((await t.request('GET', '/v1/sandboxes', { keepAlive: true })).status, 200)
  })

  it('keeps it when no route began to read the body: Node reads the rest and drops it, so a client still sending gets to the answer', async () => {
    // Refused on its declared length, before any of it is read.
    const declared = await t.request('POST', '/v1/sandboxes', { body: Buffer.alloc(maxJsonBytes + 1, 0x20), headers: json, keepAlive: true })
    assert.equal(declared.status, 413)
    assert.equal(declared.headers.connection, 'keep-alive')
    // Refused before its body is read (no key).
    const unauthenticated = await t.request('POST', '/v1/sandboxes', { chunks: tooMuch(), headers: json, key: null, keepAlive: true })
    assert.equal(unauthenticated.status, 401)
    assert.equal(unauthenticated.headers.connection, 'keep-alive')
    assert.equal((await t.request('GET', '/v1/sandboxes', { keepAlive: true })).status, 200)
  })

  it('keeps a connection whose request was read whole', async () => {
    for (let i = 0; i < 3; i++) {
      const listed = await t.request('GET', '/v1/sandboxes', { keepAlive: true })
      assert.equal(listed.status, 200)
      assert.equal(listed.headers.connection, 'keep-alive')
    }
    const bad = await t.request('POST', '/v1/sandboxes', { body: { template: 7 }, keepAlive: true })
    assert.equal(bad.status, 400)
    assert.equal(bad.headers.connection, 'keep-alive')
  })
})
