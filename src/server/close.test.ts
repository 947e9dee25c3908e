import assert from 'node:assert/strict'
import { once } from 'node:events'
import { test } from 'node:test'
import { SandstormError } from '../shared/index.js'
import { ndjsonLines, startTestServer } from './test-server.fixture.js'

test('close resolves with keep-alive connections and an open stream, cutting nothing and leaking no socket', async () => {
  const t = await startTestServer()
  let closed = false
  try {
    const sb = (await t.request('POST', '/v1/sandboxes', { body: {}, keepAlive: true })).json
    await t.request('GET', '/v1/sandboxes', { keepAlive: true })
    const res = await t.open('POST', `/v1/sandboxes/${sb.id}/exec`, { body: { cmd: 'wait' }, keepAlive: true })
    const lines = ndjsonLines(res)
    assert.equal((await lines.next()).value.type, 'start')
    const drained = (async () => {
      for await (const _ of lines);
    })()
    await t.close()
    closed = true
    await drained
    assert.equal(t.logs.records.find((r) => /cutting them/.test(r.msg ?? '')), undefined, 'no connection had to be cut')
  } finally {
    if (!closed) await t.close()
  }
})

test('close aborts a create in flight; the create leaves no row and the database closes after it', async () => {
  const t = await startTestServer()
  let closed = false
  try {
    const create = t.agent.create.bind(t.agent)
    const started = once(t.agent.events, 'create-waiting')
    t.agent.create = async (_req, options = {}) => {
      t.agent.events.emit('create-waiting')
      await once(options.signal!, 'abort')
      throw SandstormError.from(options.signal!.reason)
    }
    const answer = t.request('POST', '/v1/sandboxes', { body: {} })
    await started
    await t.server.close()
    const res = await answer
    assert.deepEqual([res.status, res.json], [503, { code: 'unavailable', message: 'the server is shutting down' }])
    t.agent.create = create
    await t.restart()
    assert.deepEqual((await t.request('GET', '/v1/sandboxes')).json, [])
    await t.close()
    closed = true
  } finally {
    if (!closed) await t.close()
  }
})
