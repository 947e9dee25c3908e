import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { silentLogger } from '../shared/index.js'
import { createSandboxCatalog } from './catalog.js'
import { openDatabase } from './db.js'
import { createFakeAgent } from './fake-agent.fixture.js'
import { watchSandboxStates } from './state-watch.js'

test('a running sandbox is marked stopped only when two looks in a row find it stopped', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-state-watch-'))
  const db = openDatabase(dir)
  const controller = new AbortController()
  try {
    const catalog = createSandboxCatalog(db)
    const agent = createFakeAgent()
    for (const id of ['sb-dies000000000000', 'sb-blips00000000000']) {
      catalog.insert({ id, template: 'debian', runtime: 'runc', state: 'running', memoryMiB: 512, cpus: 1, pidsMax: 256, diskMiB: 2048, labels: {}, env: {}, network: 'none', createdAtMs: 0, expiresAtMs: Date.now() + 60_000 })
      agent.plant(id)
    }
    const watch = watchSandboxStates({ agent, catalog, logger: silentLogger(), intervalMs: 3_600_000, signal: controller.signal })
    const stateOf = (id: string) => catalog.get(id)?.state

    agent.sandboxes.get('sb-dies000000000000')!.sandbox.status = 'stopped'
    await watch.look()
    assert.equal(stateOf('sb-dies000000000000'), 'running', 'one look is not enough')
    await watch.look()
    assert.equal(stateOf('sb-dies000000000000'), 'stopped')

    // Stopped for one look only, as a sandbox is for a moment while it is restored.
    agent.sandboxes.get('sb-blips00000000000')!.sandbox.status = 'stopped'
    await watch.look()
    agent.sandboxes.get('sb-blips00000000000')!.sandbox.status = 'running'
    await watch.look()
    await watch.look()
    assert.equal(stateOf('sb-blips00000000000'), 'running')
  } finally {
    controller.abort()
    db.close()
    await rm(dir, { recursive: true, force: true })
  }
})
