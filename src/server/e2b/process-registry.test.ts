import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { createSandboxCatalog } from '../catalog.js'
import { openDatabase } from '../db.js'
import { createProcessRegistry, forgetGoneSandboxes } from './process-registry.js'

const entry = (bytes: number) => ({ cmd: '/bin/true', args: [], envs: { BIG: 'x'.repeat(bytes) }, pty: false })

describe('the envd process registry', () => {
  it('keeps at most 4 MiB of processes\' commands and env per sandbox, the newest', () => {
    const registry = createProcessRegistry()
    for (let pid = 1; pid <= 10; pid++) registry.add('sb-a', pid, entry(1024 * 1024))
    const kept = Array.from({ length: 10 }, (_, i) => i + 1).filter((pid) => registry.get('sb-a', pid))
    // Each weighs a little over 1 MiB (its name and command too): three fit.
    assert.deepEqual(kept, [8, 9, 10])
    // Small ones are kept by count (512) as before.
    for (let pid = 100; pid < 700; pid++) registry.add('sb-b', pid, entry(10))
    assert.equal(registry.get('sb-b', 187), undefined)
    assert.ok(registry.get('sb-b', 188))
  })

  it('forgets a sandbox once the catalog does, however it went', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sandstorm-registry-'))
    const db = openDatabase(dir)
    try {
      const catalog = createSandboxCatalog(db)
      const registry = createProcessRegistry()
      const stop = forgetGoneSandboxes(catalog, registry)
      const id = 'sb-gone000000000000'
      catalog.insert({ id, template: 'debian', runtime: 'runc', state: 'running', memoryMiB: 512, cpus: 1, pidsMax: 256, diskMiB: 2048, labels: {}, env: {}, network: 'none', createdAtMs: 0, expiresAtMs: Date.now() + 60_000 })
      registry.add(id, 5, entry(10))
      catalog.update(id, { state: 'paused' })
      assert.ok(registry.get(id, 5), 'a paused sandbox keeps its processes')
      catalog.delete(id)
      assert.equal(registry.get(id, 5), undefined)
      stop()
      // A record that comes in after the delete (a command whose pid arrived late) is not kept.
      const late = createProcessRegistry((sandboxId) => catalog.get(sandboxId) !== undefined)
      late.add(id, 7, entry(10))
      late.hide(id, 8)
      assert.equal(late.get(id, 7), undefined)
      assert.equal(late.hidden(id, 8), false)
    } finally {
      db.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
