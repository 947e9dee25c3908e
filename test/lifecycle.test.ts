/**
 * Sandbox lifecycle end to end: labels, info, timeouts and expiry, and that a destroyed sandbox
 * (or one that failed to start) leaves nothing on the host.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createLocalAgent, type AgentApi } from '../src/agent/index.js'
import { startServer } from '../src/server/index.js'
import { NotFoundError, Sandbox, SandstormSdkError } from '@sandstorm/sdk'
import { silentLogger } from '../src/shared/index.js'
import { leftoversOf, loopDevicesUnder, sandboxIdsOnDisk } from './helpers/leftovers.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false


describe('sandbox lifecycle end to end', { skip }, () => {
  let stack: Stack

  before(async () => {
    stack = await startStack()
  })
  after(async () => {
    await stack?.close()
  })

  it('filters the list by labels and reports info', async () => {
    const a = await Sandbox.create('debian', { ...stack.conn, labels: { team: 'a', role: 'web' }, memoryMiB: 128, cpus: 0.5 })
    const b = await Sandbox.create('debian', { ...stack.conn, labels: { team: 'b', role: 'web' } })
    const ids = (list: { id: string }[]) => list.map((s) => s.id).sort()
    assert.deepEqual(ids(await Sandbox.list({ ...stack.conn, labels: { team: 'a' } })), [a.sandboxId])
    assert.deepEqual(ids(await Sandbox.list({ ...stack.conn, labels: { role: 'web' } })), [a.sandboxId, b.sandboxId].sort())
    assert.deepEqual(ids(await Sandbox.list({ ...stack.conn, labels: { team: 'b', role: 'web' } })), [b.sandboxId])
    assert.deepEqual(await Sandbox.list({ ...stack.conn, labels: { team: 'a', role: 'db' } }), [])
    assert.deepEqual(ids(await Sandbox.list({ ...stack.conn, state: 'running' })).filter((id) => id === a.sandboxId), [a.sandboxId])

    const info = await a.getInfo()
    assert.equal(info.id, a.sandboxId)
    assert.equal(info.template, 'debian')
    assert.equal(info.state, 'running')
    assert.equal(info.runtime, 'runc')
    assert.equal(info.memoryMiB, 128)
    assert.equal(info.cpus, 0.5)
    assert.deepEqual(info.labels, { team: 'a', role: 'web' })
    assert.ok(Date.parse(info.expiresAt) > Date.parse(info.createdAt))
    assert.deepEqual(await Sandbox.getInfo(a.sandboxId, stack.conn), info)
    assert.equal(await a.isRunning(), true)
    // The limits are the ones the kernel enforces.
    const limit = await a.commands.run('cat /sys/fs/cgroup/memory/memory.limit_in_bytes')
    assert.equal(Number(limit.stdout), 128 * 1024 * 1024)

    await Promise.all([a.kill(), b.kill()])
    assert.equal(await a.isRunning(), false)
    await assert.rejects(a.getInfo(), NotFoundError)
  })

  it('setTimeout moves expiresAt', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn, timeoutMs: 60_000 })
    const before = Date.parse((await sbx.getInfo()).expiresAt)
    await sbx.setTimeout(3_600_000)
    const extended = Date.parse((await sbx.getInfo()).expiresAt)
    assert.ok(extended >= before + 3_500_000, `expected expiresAt about an hour on, got ${extended - before} ms later`)
    const viaStatic = await Sandbox.setTimeout(sbx.sandboxId, 120_000, stack.conn)
    assert.ok(Date.parse(viaStatic.expiresAt) < extended)
    await assert.rejects(Sandbox.setTimeout('sb-0000000000000000', 1000, stack.conn), NotFoundError)
    await sbx.kill()
  })

  it('a sandbox whose timeout passes goes away on its own, leaving nothing', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn, timeoutMs: 1500, labels: { expiry: 'yes' } })
    await sbx.commands.run('sleep 600 >/dev/null 2>&1 &')
    await until('the expired sandbox is gone from the list', async () => (await Sandbox.list({ ...stack.conn, labels: { expiry: 'yes' } })).length === 0)
    await assert.rejects(sbx.getInfo(), NotFoundError)
    assert.deepEqual(await leftoversOf(stack.dataDir, sbx.sandboxId), [])
  })

  it('kill() leaves nothing: no mount, cgroup, process, dir or runc state', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn })
    // Give it something to clean up: processes in the background, files in its layer.
    await sbx.commands.run('sleep 600 >/dev/null 2>&1 & (sleep 601 >/dev/null 2>&1 &)')
    await sbx.commands.run('sleep 602', { background: true })
    await sbx.files.write('/root/data.bin', new Uint8Array(1024 * 1024))
    const before = await leftoversOf(stack.dataDir, sbx.sandboxId)
    // Its root overlay lives in its own mount namespace: the host holds one mount only, its disk
    // (the ext4 image of its quota, under the layer store), and a loop device for it.
    const disk = `mount ${join(stack.dataDir, 'storage', 'writable', sbx.sandboxId)}`
    assert.deepEqual(before.filter((l) => l.startsWith('mount ')), [disk], `expected only the sandbox's disk mounted on the host, found ${before.join(', ')}`)
    const ownLoop = (loops: string[]) => loops.filter((l) => l.endsWith(`${sbx.sandboxId}.disk`))
    assert.equal(ownLoop(await loopDevicesUnder(stack.dataDir)).length, 1)
    assert.ok(before.some((l) => l.startsWith('cgroup ')), 'expected a live sandbox to have cgroups')
    assert.ok(before.some((l) => l.startsWith('process ')), 'expected a live sandbox to have processes')
    assert.equal(await sbx.kill(), true)
    assert.deepEqual(await leftoversOf(stack.dataDir, sbx.sandboxId), [])
    assert.deepEqual(ownLoop(await loopDevicesUnder(stack.dataDir)), [])
    assert.equal(await sbx.kill(), false)
  })

  it('creates several at once, and killing one with commands running ends them', async () => {
    const many = await Promise.all(Array.from({ length: 4 }, (_, i) => Sandbox.create('debian', { ...stack.conn, labels: { batch: String(i) } })))
    assert.equal(new Set(many.map((s) => s.sandboxId)).size, 4)
    const outputs = await Promise.all(many.map((s) => s.commands.run('hostname; cat /proc/1/cmdline | tr "\\0" " "')))
    for (const o of outputs) assert.match(o.stdout, /^sandbox\n\/\.sandstorm\/init/)
    // A foreground command in flight when its sandbox is killed ends with an error, not a hang.
    const [first] = many
    let onStarted!: () => void
    const started = new Promise<void>((resolve) => (onStarted = resolve))
    const running = first!.commands.run('echo up; sleep 600', { onStdout: () => onStarted() })
    const settled = running.then(
      () => 'resolved',
      (e: unknown) => (e instanceof Error ? e.name : String(e)),
    )
    await started
    await Promise.all(many.map((s) => s.kill()))
    assert.notEqual(await settled, 'resolved')
    for (const s of many) assert.deepEqual(await leftoversOf(stack.dataDir, s.sandboxId), [])
  })

  it('an unknown template answers 404 and leaves nothing', async () => {
    const before = await sandboxIdsOnDisk(stack.dataDir)
    await assert.rejects(Sandbox.create('no-such-template', { ...stack.conn }), (e: unknown) => {
      assert.ok(e instanceof NotFoundError, `expected NotFoundError, got ${String(e)}`)
      assert.match(e.message, /no-such-template/)
      assert.match(e.message, /debian/)
      return true
    })
    assert.deepEqual(await sandboxIdsOnDisk(stack.dataDir), before)
  })
})

/** A template store holding two templates that cannot start: one without a root, one whose /proc is a file. */
async function brokenTemplates(dir: string): Promise<void> {
  const template = async (name: string, prepare: (rootfs: string) => Promise<void>) => {
    const versionDir = join(dir, name, '1')
    await mkdir(versionDir, { recursive: true })
    const info = {
      name,
      version: 1,
      description: 'broken on purpose',
      sizeBytes: 0,
      buildMs: 0,
      builtAt: new Date().toISOString(),
      defaults: { memoryMiB: 64, cpus: 1 },
      readonlyBinds: [],
    }
    await writeFile(join(versionDir, 'template.json'), JSON.stringify(info))
    await prepare(join(versionDir, 'rootfs'))
    await symlink('1', join(dir, name, 'current'))
  }
  await template('no-rootfs', async () => undefined)
  await template('proc-is-a-file', async (rootfs) => {
    await mkdir(join(rootfs, 'etc'), { recursive: true })
    await writeFile(join(rootfs, 'proc'), 'not a directory')
  })
}

describe('failed creates end to end', { skip }, () => {
  let dataDir: string
  let templatesDir: string
  let agent: AgentApi
  let server: Awaited<ReturnType<typeof startServer>>
  const attempted: string[] = []

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'sandstorm-failed-create-'))
    templatesDir = join(dataDir, 'templates')
    await brokenTemplates(templatesDir)
    const real = await createLocalAgent({ dataDir, templatesDir, logger: silentLogger() })
    // The same agent, noting the id of each sandbox it is asked to create.
    agent = {
      ...real,
      create: (req, options) => {
        attempted.push(req.id)
        return real.create(req, options)
      },
    }
    server = await startServer({ dataDir, agent, port: 0, logger: silentLogger() })
  })
  after(async () => {
    await server?.close()
    await agent?.close()
    if (dataDir) await rm(dataDir, { recursive: true, force: true })
  })

  for (const template of ['no-rootfs', 'proc-is-a-file']) {
    it(`a create that fails (${template}) answers an error and leaves nothing`, async () => {
      const conn = { apiUrl: server.url, apiKey: server.apiKey }
      const before = attempted.length
      await assert.rejects(Sandbox.create(template, conn), (e: unknown) => {
        assert.ok(e instanceof SandstormSdkError, `expected an SDK error, got ${String(e)}`)
        // A host failure reaches the client as the request's id; runc's reason is in the log (test/error-leaks.test.ts).
        assert.match(e.message, /^an internal error happened; the server logged its cause as request req-/)
        return true
      })
      assert.equal(attempted.length, before + 1, 'expected the agent to have been asked to create it')
      const id = attempted.at(-1)!
      assert.deepEqual(await leftoversOf(dataDir, id), [])
      assert.deepEqual(await sandboxIdsOnDisk(dataDir), [])
      assert.deepEqual(await Sandbox.list(conn), [])
      assert.equal(existsSync(join(dataDir, 'sandboxes', id)), false)
    })
  }
})
