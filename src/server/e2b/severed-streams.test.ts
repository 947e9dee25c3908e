import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { createConnectRouter } from '@connectrpc/connect'
import { createSandboxCatalog } from '../catalog.js'
import { openDatabase } from '../db.js'
import { Process } from './gen/process/process_pb.js'
import { createSandboxExits } from './sandbox-exits.js'
import { severableFetchHandler, severCall } from './severed-streams.js'

/** A Connect streaming request body: one envelope (flags 0, big-endian length) of JSON. */
function envelope(json: unknown): Buffer<ArrayBuffer> {
  const body = Buffer.from(JSON.stringify(json))
  const head = Buffer.alloc(5)
  head.writeUInt32BE(body.length, 1)
  return Buffer.concat([head, body])
}

test('a severed call drops its response mid-body, with no end-of-stream message; an unsevered one ends as usual', async () => {
  let release!: () => void
  const released = new Promise<void>((resolve) => (release = resolve))
  const router = createConnectRouter()
  router.service(Process, {
    async *start(req, ctx) {
      yield { event: { event: { case: 'start', value: { pid: 7 } } } }
      if (req.tag === 'cut') {
        await released
        severCall(ctx, new Error('sandbox gone'))
      }
    },
  })
  const handler = router.handlers.find((h) => h.method.name === 'Start')!
  const call = (tag: string) =>
    severableFetchHandler(handler)(
      new Request(`http://envd${handler.requestPath}`, { method: 'POST', headers: { 'content-type': 'application/connect+json' }, body: envelope({ tag, process: { cmd: 'x' } }) }),
    )

  const whole = Buffer.from(await (await call('keep')).arrayBuffer()).toString()
  assert.match(whole, /"pid":7/)
  assert.match(whole, /\{\}$/, 'an unsevered stream ends with its end-of-stream message')

  const res = await call('cut')
  assert.equal(res.status, 200)
  const reader = res.body!.getReader()
  const first = await reader.read()
  assert.match(Buffer.from(first.value!).toString(), /"pid":7/)
  release()
  await assert.rejects(reader.read(), /sandbox gone/, 'the body breaks instead of ending')
})

test('sandbox exits: a signal per sandbox that fires when the catalog says it stopped running', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-exits-'))
  const db = openDatabase(dir)
  try {
    const catalog = createSandboxCatalog(db)
    const exits = createSandboxExits(catalog)
    const insert = (id: string) =>
      catalog.insert({ id, template: 'debian', runtime: 'runc', state: 'running', memoryMiB: 512, cpus: 1, pidsMax: 256, diskMiB: 2048, labels: {}, env: {}, network: 'none', createdAtMs: 0, expiresAtMs: Date.now() + 60_000 })
    insert('sb-paused0000000000')
    insert('sb-killed0000000000')
    insert('sb-stays0000000000a')
    const paused = exits.signalFor('sb-paused0000000000')
    const killed = exits.signalFor('sb-killed0000000000')
    const stays = exits.signalFor('sb-stays0000000000a')
    catalog.update('sb-stays0000000000a', { expiresAtMs: Date.now() + 120_000 })
    catalog.update('sb-paused0000000000', { state: 'paused' })
    catalog.delete('sb-killed0000000000')
    assert.equal(paused.aborted, true)
    assert.equal(killed.aborted, true)
    assert.equal(stays.aborted, false, 'another change of a running sandbox is no exit')
    assert.equal(exits.signalFor('sb-killed0000000000').aborted, true, 'a sandbox that is gone is left already')
    catalog.update('sb-paused0000000000', { state: 'running' })
    assert.equal(exits.signalFor('sb-paused0000000000').aborted, false, 'a resumed sandbox gets a new signal')
    exits.close()
  } finally {
    db.close()
    await rm(dir, { recursive: true, force: true })
  }
})
