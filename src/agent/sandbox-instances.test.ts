import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import type { RuntimeBackend, RuntimeSandbox } from '../runtime/index.js'
import { createSandboxInstances } from './sandbox-instances.js'

const dirs: string[] = []
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})
const recordFile = async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-instances-'))
  dirs.push(dir)
  return join(dir, 'instances.json')
}

/** A backend that records the ids it is called with and lists what `running` holds. */
function fakeBackend(running: RuntimeSandbox[]) {
  const calls: string[] = []
  const backend = {
    name: 'fake',
    async create(spec: { id: string }) {
      calls.push(`create ${spec.id}`)
      return { id: spec.id, status: 'running', pid: null }
    },
    async destroy(id: string) {
      calls.push(`destroy ${id}`)
    },
    async list() {
      return running
    },
    async stat(id: string, path: string) {
      calls.push(`stat ${id} ${path}`)
      return { name: path, path, type: 'file', size: 0, mode: 0, mtimeMs: 0 }
    },
  } as unknown as RuntimeBackend
  return { backend, calls }
}

const sbx = 'sb-aaaaaaaaaaaaaaaa'
const inst = 'inst-bbbbbbbbbbbbbbbb'

test('a sandbox is its own instance until pointed elsewhere; calls follow it', async () => {
  const instances = await createSandboxInstances(await recordFile())
  const { backend, calls } = fakeBackend([])
  const wrapped = instances.wrap(backend)
  assert.equal(instances.of(sbx), sbx)
  await wrapped.stat(sbx, '/a')
  assert.equal(await instances.point(sbx, inst), sbx)
  await wrapped.stat(sbx, '/b')
  await instances.unwrap(wrapped).destroy(sbx)
  assert.deepEqual(calls, [`stat ${sbx} /a`, `stat ${inst} /b`, `destroy ${sbx}`])
})

test('list answers in sandbox ids and hides retired instances until their teardown ends', async () => {
  const instances = await createSandboxInstances(await recordFile())
  const { backend } = fakeBackend([
    { id: sbx, status: 'running', pid: 1 },
    { id: inst, status: 'running', pid: 2 },
  ])
  const wrapped = instances.wrap(backend)
  await instances.point(sbx, inst)
  assert.deepEqual((await wrapped.list()).map((s) => [s.id, s.pid]), [[sbx, 2]])
  let finish!: () => void
  instances.retire(sbx, () => new Promise<void>((resolve) => (finish = resolve)))
  assert.deepEqual(instances.retired(), [sbx])
  finish()
  await instances.drain()
  assert.deepEqual(instances.retired(), [])
})

test('aliases and retired instances survive a reopen; a failed teardown stays retired', async () => {
  const file = await recordFile()
  const first = await createSandboxInstances(file)
  await first.point(sbx, inst)
  first.retire(sbx, async () => {
    throw new Error('busy')
  })
  await first.drain()
  const again = await createSandboxInstances(file)
  assert.equal(again.of(sbx), inst)
  assert.deepEqual(again.retired(), [sbx])
  await again.forget(sbx)
  assert.equal((await createSandboxInstances(file)).of(sbx), sbx)
})
