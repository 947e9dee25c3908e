/** A fleet's placements in the catalog, a warm pool's sandboxes (placed before they have a row) among them. */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createSandboxCatalog, type SandboxCatalog, type SandboxRecord } from './catalog.js'
import { openDatabase, type CatalogDb } from './db.js'

const record = (id: string): SandboxRecord => ({
  id, template: 'debian', runtime: 'runc', state: 'running', memoryMiB: 512, cpus: 1, pidsMax: 256, diskMiB: 2048,
  labels: {}, env: {}, network: 'none', createdAtMs: Date.now(), expiresAtMs: Date.now() + 60_000,
})

describe('sandbox placement', () => {
  let dir: string
  let db: CatalogDb
  let catalog: SandboxCatalog
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-placement-'))
    db = openDatabase(dir)
    catalog = createSandboxCatalog(db)
  })
  after(async () => {
    db.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('keeps the agent of a pooled sandbox until its hand-over inserts the row, which then holds it', () => {
    const { placement } = catalog
    placement.place('sb-pooled', 'agent-one')
    assert.equal(placement.agentOf('sb-pooled'), 'agent-one')
    assert.deepEqual(placement.on('agent-one'), [])
    catalog.insert(record('sb-pooled'))
    assert.equal(placement.agentOf('sb-pooled'), 'agent-one')
    assert.deepEqual(placement.on('agent-one'), [{ id: 'sb-pooled', state: 'running', template: 'debian', runtime: 'runc' }])
    assert.deepEqual(placement.loads().get('agent-one'), { sandboxes: 1, memoryMiB: 512, cpus: 1 })
    // The row owns it now: releasing a kept placement leaves a row's alone.
    placement.release('sb-pooled')
    assert.equal(placement.agentOf('sb-pooled'), 'agent-one')
    assert.deepEqual(placement.markLost('agent-one'), ['sb-pooled'])
  })

  it('forgets a pooled sandbox released or on a removed agent, and a cold create places its row as before', () => {
    const { placement } = catalog
    placement.place('sb-gone', 'agent-two')
    placement.release('sb-gone')
    assert.equal(placement.agentOf('sb-gone'), undefined)

    placement.place('sb-away', 'agent-two')
    catalog.insert(record('sb-cold'))
    assert.equal(placement.agentOf('sb-cold'), null)
    placement.place('sb-cold', 'agent-two')
    assert.deepEqual(placement.forgetAllOn('agent-two'), ['sb-cold'])
    assert.equal(placement.agentOf('sb-away'), undefined)
    catalog.insert(record('sb-away'))
    assert.equal(placement.agentOf('sb-away'), null)
  })
})
