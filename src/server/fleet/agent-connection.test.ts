import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { ServerMessage } from '../../proto/index.js'
import { httpStatusOf, SandstormError } from '../../shared/index.js'
import { createAgentConnection, fromWire } from './agent-connection.js'
import type { DataCall } from './agent-connection.js'

describe("an agent's wire error", () => {
  it('keeps a code of ours, and makes any other an internal error that is not shown', () => {
    const known = fromWire({ code: 'not_found', message: 'sandbox "sb-x" not found' })
    assert.equal(known.code, 'not_found')
    assert.equal(known.expose, true)
    // A code that is none of ours had no HTTP status: writing its answer threw out of a handler.
    for (const code of ['x', 'constructor', '__proto__', 'toString']) {
      const err = fromWire({ code, message: 'from a hostile agent' })
      assert.equal(err.code, 'internal', code)
      assert.equal(err.expose, false)
      assert.equal(typeof httpStatusOf[err.code], 'number')
    }
  })
})

/** A connection whose requests are kept, so that a test can answer them as a hostile agent would. */
function connection() {
  const sent: ServerMessage[] = []
  const conn = createAgentConnection('ag-hostile', (m) => void sent.push(m))
  const lastId = (): number => sent.at(-1)!.request!.requestId
  return { conn, sent, lastId }
}

/** Whether a promise has settled, after the turn of the event loop in which its answer came. */
async function settled(promise: Promise<unknown>): Promise<'resolved' | 'rejected' | 'pending'> {
  return Promise.race([promise.then(() => 'resolved' as const, () => 'rejected' as const), new Promise<'pending'>((resolve) => setImmediate(() => resolve('pending')))])
}

describe("an agent's answers on its link", () => {
  it('settle only a request of their own kind: a Data stream never answers a call, a Reply never a Data request', async () => {
    const { conn, lastId } = connection()
    const stream = {} as DataCall
    const call = conn.call('templates', null)
    assert.equal(conn.onData(lastId(), stream), false, 'a Data stream was taken as the answer of a unary call')
    assert.equal(await settled(call), 'pending')
    const opened = conn.openData('readFile', { id: 'sb-a', path: '/etc/passwd' })
    conn.onReply({ requestId: lastId(), resultJson: '{"chunk":"forged"}' })
    assert.equal(await settled(opened), 'pending', 'a Reply settled a Data request')
    conn.fail(new SandstormError('unavailable', 'done'))
    await assert.rejects(call)
    await assert.rejects(opened)
  })

  it('fail their caller when they are not JSON, instead of leaving it waiting', async () => {
    const { conn, lastId } = connection()
    const call = conn.call('list', null)
    try {
      conn.onReply({ requestId: lastId(), resultJson: '{not json' })
    } catch {
      // The old connection threw here, after it had forgotten the caller.
    }
    assert.equal(await settled(call), 'rejected', 'the caller of an answer that is not JSON was left waiting')
    await assert.rejects(call, (err: SandstormError) => err.code === 'internal' && !err.expose)
  })

  it('are checked against the contract: a create answered with a runtime or status of no kind we know is refused', async () => {
    const { conn, lastId } = connection()
    const good = { id: 'sb-aaaaaaaaaaaaaaaa', template: 'debian', runtime: 'runc', status: 'running' }
    for (const bad of [{ ...good, runtime: 'x'.repeat(1 << 20) }, { ...good, status: 'owned' }, { ...good, id: null }, null, [], 'running']) {
      const create = conn.call('create', { id: good.id, template: 'debian', memoryMiB: 512, cpus: 1, pidsMax: 256, diskMiB: 2048, env: {}, network: { mode: 'none' } })
      conn.onReply({ requestId: lastId(), resultJson: JSON.stringify(bad) })
      await assert.rejects(create, (err: SandstormError) => err.code === 'internal' && !err.expose && /out of its contract/.test(err.message), JSON.stringify(bad).slice(0, 80))
    }
    const create = conn.call('create', { id: good.id, template: 'debian', memoryMiB: 512, cpus: 1, pidsMax: 256, diskMiB: 2048, env: {}, network: { mode: 'none' } })
    conn.onReply({ requestId: lastId(), resultJson: JSON.stringify({ ...good, extra: 'dropped' }) })
    assert.deepEqual(await create, good)
  })

  it('keep the whole samples of a statsMany answer and leave out the rest', async () => {
    const { conn, lastId } = connection()
    const sample = { memoryBytes: 1, cpuNanos: 2, pids: 3, diskUsedBytes: 4, diskLimitBytes: 5 }
    const stats = conn.call('statsMany', { ids: ['sb-a', 'sb-b', 'sb-c'] })
    conn.onReply({ requestId: lastId(), resultJson: JSON.stringify({ 'sb-a': sample, 'sb-b': { ...sample, memoryBytes: null }, 'sb-c': { ...sample, pids: -1 } }) })
    assert.deepEqual(await stats, { 'sb-a': sample })
  })
})
