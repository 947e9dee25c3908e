import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SandstormError } from '../shared/index.js'
import type { AgentCreateRequest } from './agent-api.js'
import type { MachineSnapshot, MachineSnapshots } from './machine-snapshots.js'
import { planStart } from './machine-start.js'

const rootfs = { lowerDirs: ['/t/debian/1/rootfs'], readonlyBinds: [] }
const saved: MachineSnapshot = {
  id: 'snap-aaaaaaaaaaaaaaaa', parentId: null, sandboxId: 'sb-aaaaaaaaaaaaaaaa', template: 'debian', label: '', runtime: 'qemu',
  memoryMiB: 512, cpus: 1, pidsMax: 1024, diskMiB: 2048, env: {}, cwd: '/', createdAt: '2024-01-01T00:00:00.000Z', rootfs,
  image: { dir: '/d/machines/snap-aaaaaaaaaaaaaaaa', memoryMiB: 512, cpus: 1 }, driver: 'machine', depth: 1,
}
const machines: MachineSnapshots = {
  take: () => Promise.reject(new Error('unused')),
  find: async (id) => (id === saved.id ? saved : undefined),
  list: async () => [saved],
  remove: () => Promise.reject(new Error('unused')),
}
const ctx = { machines, machineRuntimes: new Set(['qemu']), defaultRuntime: 'runc' }
const req = (over: Partial<AgentCreateRequest> = {}): AgentCreateRequest => ({ id: 'sb-bbbbbbbbbbbbbbbb', template: 'debian', memoryMiB: 512, cpus: 1, pidsMax: 1024, diskMiB: 2048, env: {}, network: { mode: 'none' }, ...over })
const plain = { info: { name: 'debian' }, rootfs }
const golden = { info: { name: 'py', snapshotId: saved.id }, rootfs }
const code = (c: string) => (err: unknown) => err instanceof SandstormError && err.code === c

describe('planStart', () => {
  it('runs on the default runtime unless the create names one', async () => {
    assert.deepEqual(await planStart(req(), plain, ctx), { runtime: 'runc' })
    assert.deepEqual(await planStart(req({ runtime: 'qemu' }), plain, ctx), { runtime: 'qemu' })
  })

  it('clones a golden machine template of the same config, and implies its runtime', async () => {
    const plan = await planStart(req(), golden, ctx)
    assert.equal(plan.runtime, 'qemu')
    assert.equal(plan.start, 'golden')
    assert.equal(plan.machine?.dir, saved.image.dir)
    assert.equal(plan.machineFrom, saved.id)
  })

  it('boots a golden machine template cold on another config, and says why', async () => {
    const plan = await planStart(req({ memoryMiB: 1024 }), golden, ctx)
    assert.equal(plan.start, 'cold')
    assert.equal(plan.machine, undefined)
    assert.match(plan.startReason ?? '', /saved with 512 MiB, 1 cpus and a 2048 MiB disk, the create asked for 1024 MiB, 1 cpus and a 2048 MiB disk/)
  })

  it('forks a machine snapshot as a clone, and refuses another config or runtime', async () => {
    const plan = await planStart(req({ snapshotId: saved.id }), plain, ctx)
    assert.equal(plan.machine?.dir, saved.image.dir)
    assert.equal(plan.start, undefined)
    await assert.rejects(planStart(req({ snapshotId: saved.id, cpus: 2 }), plain, ctx), code('failed_precondition'))
    await assert.rejects(planStart(req({ snapshotId: saved.id, runtime: 'runc' }), plain, ctx), code('failed_precondition'))
  })

  it('refuses a layer snapshot or a layered golden template on a machine runtime', async () => {
    await assert.rejects(planStart(req({ snapshotId: 'snap-cccccccccccccccc', runtime: 'qemu' }), plain, ctx), code('failed_precondition'))
    const layered = { info: { name: 'layered', snapshotId: 'snap-cccccccccccccccc' }, rootfs: { lowerDirs: ['/l/1', '/t/debian/1/rootfs'], readonlyBinds: [] } }
    await assert.rejects(planStart(req({ runtime: 'qemu' }), layered, ctx), /golden template of runc layers/)
    assert.deepEqual(await planStart(req(), layered, ctx), { runtime: 'runc' })
  })
})
