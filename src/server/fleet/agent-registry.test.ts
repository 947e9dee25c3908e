import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { silentLogger, type SandboxState } from '../../shared/index.js'
import { createSandboxCatalog, type SandboxCatalog } from '../catalog.js'
import { openDatabase } from '../db.js'
import { createSandboxExits } from '../e2b/sandbox-exits.js'
import { createAgentConnection } from './agent-connection.js'
import { createAgentRegistry } from './agent-registry.js'

const info = { id: 'agent-one', hostname: 'host-one', runtimes: ['runc'], cpus: 2, memoryMiB: 4096 }

function placed(catalog: SandboxCatalog, id: string, agentId: string): void {
  catalog.insert({ id, template: 'debian', runtime: 'runc', state: 'running', memoryMiB: 512, cpus: 1, pidsMax: 256, diskMiB: 2048, labels: {}, env: {}, network: 'none', createdAtMs: Date.now(), expiresAtMs: Date.now() + 60_000 })
  catalog.placement.place(id, agentId)
}

const sorted = (heard: [string, SandboxState | undefined][]) => heard.sort((a, b) => a[0].localeCompare(b[0]))

describe('the agent registry', () => {
  it("changes its agents' sandboxes through the catalog, so that its watchers hear each change", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sandstorm-agent-registry-'))
    const db = openDatabase(dir)
    try {
      const catalog = createSandboxCatalog(db)
      const heard: [string, SandboxState | undefined][] = []
      catalog.watchStates((id, state) => heard.push([id, state]))
      const exits = createSandboxExits(catalog)
      placed(catalog, 'sb-kept00000000000', info.id)
      placed(catalog, 'sb-gone00000000000', info.id)
      placed(catalog, 'sb-other0000000000', 'agent-two')
      // A started server holds every placed sandbox lost until its agent registers.
      const registry = createAgentRegistry({ db, catalog, logger: silentLogger() })
      assert.deepEqual(sorted(heard.splice(0)), [['sb-gone00000000000', 'lost'], ['sb-kept00000000000', 'lost'], ['sb-other0000000000', 'lost']])
      registry.admit(info.id, info.hostname)

      // The agent comes back holding one of its two sandboxes: the other is gone from the catalog.
      const conn = createAgentConnection(info.id, () => undefined)
      registry.attach(conn, { info, labels: {}, templates: [], sandboxes: [{ id: 'sb-kept00000000000', template: 'debian', runtime: 'runc', status: 'running' }] })
      assert.deepEqual(sorted(heard.splice(0)), [['sb-gone00000000000', undefined], ['sb-kept00000000000', 'running']])
      assert.equal(catalog.get('sb-gone00000000000'), undefined)

      // Lost: its running sandbox is lost, and a stream that follows it hears so at once.
      const following = exits.signalFor('sb-kept00000000000')
      registry.detach(conn, 'the link broke')
      assert.deepEqual(heard.splice(0), [['sb-kept00000000000', 'lost']])
      assert.equal(catalog.get('sb-kept00000000000')?.state, 'lost')
      assert.ok(following.aborted, "envd's stream of a sandbox on the lost agent ends")

      // Removed with force: its rows go, each one told; another agent's stay.
      registry.remove(info.id, { force: true })
      assert.deepEqual(heard.splice(0), [['sb-kept00000000000', undefined]])
      assert.equal(catalog.placement.agentOf('sb-other0000000000'), 'agent-two')
      assert.equal(catalog.get('sb-other0000000000')?.state, 'lost')
      registry.close()
      exits.close()
    } finally {
      db.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
