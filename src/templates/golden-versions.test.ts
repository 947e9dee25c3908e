import assert from 'node:assert/strict'
import { mkdtemp, readdir, readlink, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { SandstormError } from '../shared/index.js'
import { createTemplateStore, type GoldenVersionSpec } from './index.js'

/** A golden version over made-up layer dirs (the store only records them). */
function spec(snapshotId: string, layer: string): GoldenVersionSpec {
  return {
    rootfs: { lowerDirs: [`/layers/${layer}`, '/templates/debian/1/rootfs'], readonlyBinds: [{ source: '/etc/resolv.conf', target: '/etc/resolv.conf' }] },
    defaults: { memoryMiB: 256, cpus: 2 },
    baseTemplate: 'debian',
    snapshotId,
    sizeBytes: 1234,
    description: `debian with ${snapshotId}`,
  }
}

describe('golden template versions in the store', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-golden-store-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('adds versions that stand on layers, switches current, rolls back and says who stands on a snapshot', async () => {
    const store = createTemplateStore({ dir })
    const v1 = await store.promote('tools', spec('snap-aaaaaaaaaaaaaaaa', 'a'))
    assert.equal(v1.version, 1)
    assert.deepEqual(v1.defaults, { memoryMiB: 256, cpus: 2 })
    assert.equal(v1.baseTemplate, 'debian')
    assert.equal(v1.snapshotId, 'snap-aaaaaaaaaaaaaaaa')
    assert.equal('lowerDirs' in v1, false, 'layer paths stay inside the store')
    const v2 = await store.promote('tools', spec('snap-bbbbbbbbbbbbbbbb', 'b'))
    assert.equal(v2.version, 2)
    const resolved = await store.resolve('tools')
    assert.deepEqual(resolved.rootfs.lowerDirs, ['/layers/b', '/templates/debian/1/rootfs'])
    assert.deepEqual(resolved.rootfs.readonlyBinds, [{ source: '/etc/resolv.conf', target: '/etc/resolv.conf' }])
    assert.deepEqual(await store.standingOn('snap-aaaaaaaaaaaaaaaa'), ['tools v1'])
    assert.deepEqual(await store.standingOn('snap-cccccccccccccccc'), [])

    assert.equal((await store.rollback('tools')).version, 1)
    assert.equal(await readlink(join(dir, 'tools', 'current')), '1')
    assert.deepEqual((await store.resolve('tools')).rootfs.lowerDirs, ['/layers/a', '/templates/debian/1/rootfs'])
    await assert.rejects(store.rollback('tools'), (e: unknown) => e instanceof SandstormError && e.code === 'failed_precondition' && /version 1/.test(e.message))
    // Both versions are kept; a new one comes after the highest, and rollback from it goes to 2.
    assert.equal((await store.promote('tools', spec('snap-dddddddddddddddd', 'd'))).version, 3)
    assert.equal((await store.rollback('tools')).version, 2)
    assert.deepEqual((await readdir(join(dir, 'tools'))).sort(), ['1', '2', '3', 'current'])
    assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('.build-')), [])
  })

  it('refuses a rollback of a template that is not there, and a bad name', async () => {
    const store = createTemplateStore({ dir })
    await assert.rejects(store.rollback('nothing'), (e: unknown) => e instanceof SandstormError && e.code === 'not_found')
    await assert.rejects(store.promote('Bad Name', spec('snap-aaaaaaaaaaaaaaaa', 'a')), (e: unknown) => e instanceof SandstormError && e.code === 'invalid_argument')
  })
})
