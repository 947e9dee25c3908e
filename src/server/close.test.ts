import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { test } from 'node:test'
import { until } from '../../test/helpers/until.js'
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

test('close resolves while a tunnel is open: upgraded connections are cut after the grace, with what they reach', async () => {
  const t = await startTestServer()
  let closed = false
  const backend = createServer((s) => s.pipe(s))
  let tunnel: Socket | undefined
  try {
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve))
    const sb = (await t.request('POST', '/v1/sandboxes', { body: { network: { allowOut: [] } } })).json
    t.agent.sandboxes.get(sb.id)!.ports.set(5000, (backend.address() as AddressInfo).port)
    const { port } = new URL(t.server.url)
    tunnel = connect(Number(port), '127.0.0.1')
    // The cut may come as a reset.
    tunnel.on('error', () => undefined)
    tunnel.write(`GET /v1/sandboxes/${sb.id}/ports/5000/tunnel HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t.server.apiKey}\r\nUpgrade: sandstorm-tcp\r\nConnection: Upgrade\r\n\r\n`)
    let seen = ''
    tunnel.on('data', (c: Buffer) => (seen += c.toString()))
    await until('the tunnel to open', async () => seen.startsWith('HTTP/1.1 101'), 10_000)
    tunnel.write('ping')
    await until('the echo through the tunnel', async () => seen.endsWith('ping'), 10_000)
    const tunnelClosed = once(tunnel, 'close')
    // Listens no more; the tunnel's connection to it stays.
    backend.close()
    // Without the cut, close waits for the tunnel's client, which never leaves.
    let timer: NodeJS.Timeout | undefined
    const outcome = await Promise.race([t.close().then(() => 'closed'), new Promise((r) => (timer = setTimeout(r, 15_000, 'still waiting')))])
    clearTimeout(timer)
    closed = outcome === 'closed'
    assert.equal(outcome, 'closed')
    await tunnelClosed
    assert.ok(t.logs.records.find((r) => /cutting them/.test(r.msg ?? '')), 'the cut is logged')
  } finally {
    backend.close()
    tunnel?.destroy()
    if (!closed) await t.close()
  }
})
