/**
 * Golden templates end to end: build from steps, a failed build that leaves nothing, promote and
 * rollback, a snapshot a template stands on, and the create's source. A real server, agent and
 * runc, over a template dir of its own that borrows the debian template that setup built.
 */
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { execa } from 'execa'
import { createLocalAgent, type AgentApi } from '../src/agent/index.js'
import { startServer, type RunningServer } from '../src/server/index.js'
import { silentLogger, type TemplateBuildEvent, type TemplateInfo } from '../src/shared/index.js'
import {
  buildGoldenTemplate,
  ConflictError,
  deleteSnapshot,
  failedStepOf,
  listSnapshots,
  listTemplates,
  promoteTemplate,
  rollbackTemplate,
  Sandbox,
} from '@sandstorm/sdk'
import { skipReason, templatesDir as sharedTemplatesDir } from './helpers/stack.js'

const skip = skipReason() ?? false
const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url))

describe('golden templates', { skip }, () => {
  let dataDir: string
  let agent: AgentApi
  let server: RunningServer
  let conn: { apiUrl: string; apiKey: string }
  const templatesDir = () => join(dataDir, 'templates')
  const layerIds = async () => (await readdir(join(dataDir, 'storage', 'layers'))).sort()
  const current = async (name: string) => (await listTemplates(conn)).find((t) => t.name === name)
  const sh = async (sb: Sandbox, cmd: string) => {
    const result = await sb.commands.run(cmd, { ...conn })
    assert.equal(result.exitCode, 0, `${cmd}: ${result.stderr}`)
    return result.stdout
  }
  /** POST /v1/sandboxes by hand, to read the `source` the SDK does not expose. */
  const create = async (body: object): Promise<{ id: string; source?: string; golden?: { version: number; snapshotId: string } }> => {
    const res = await fetch(`${conn.apiUrl}/v1/sandboxes`, {
      method: 'POST',
      headers: { authorization: `Bearer ${conn.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    assert.equal(res.status, 201, await res.clone().text())
    return (await res.json()) as { id: string; source?: string; golden?: { version: number; snapshotId: string } }
  }
  const call = (method: string, path: string, body?: object) =>
    fetch(`${conn.apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${conn.apiKey}`, 'content-type': 'application/json' },
      ...(body ? { body: JSON.stringify(body) } : {}),
    })
  const cli = async (...args: string[]) => {
    const r = await execa('node', [main, '--url', conn.apiUrl, '--api-key', conn.apiKey, ...args], { reject: false })
    return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr }
  }
  const kill = (id: string) => fetch(`${conn.apiUrl}/v1/sandboxes/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${conn.apiKey}` } })

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'sandstorm-golden-'))
    // The shared debian version, linked into a template dir of this test's own, so that the
    // versions made here never land in the shared store.
    await mkdir(join(templatesDir(), 'debian'), { recursive: true })
    const { readlink } = await import('node:fs/promises')
    const version = await readlink(join(sharedTemplatesDir, 'debian', 'current'))
    await symlink(join(sharedTemplatesDir, 'debian', version), join(templatesDir(), 'debian', version))
    await symlink(version, join(templatesDir(), 'debian', 'current'))
    agent = await createLocalAgent({ dataDir, templatesDir: templatesDir(), logger: silentLogger() })
    server = await startServer({ dataDir, agent, port: 0, logger: silentLogger() })
    conn = { apiUrl: server.url, apiKey: server.apiKey }
  })
  after(async () => {
    for (const s of (await agent?.list()) ?? []) await agent.destroy(s.id).catch(() => undefined)
    await server?.close()
    await agent?.close()
    if (dataDir) await rm(dataDir, { recursive: true, force: true })
  })

  let built: TemplateInfo

  it('builds a template from steps whose sandboxes see what the steps made', async () => {
    const events: TemplateBuildEvent[] = []
    const result = await buildGoldenTemplate(
      'tools',
      { from: 'debian', steps: ['mkdir -p /opt/tools && echo one > /opt/tools/a', 'echo two >> /opt/tools/a && echo said-hello && rm /etc/debian_version'] },
      { ...conn, onEvent: (e) => events.push(e) },
    )
    built = result.template
    assert.equal(built.name, 'tools')
    assert.equal(built.version, 1)
    assert.equal(built.baseTemplate, 'debian')
    assert.equal(built.snapshotId, result.snapshotId)
    assert.deepEqual(
      events.filter((e) => e.type === 'step' || e.type === 'step_end').map((e) => `${e.type}:${e.index}`),
      ['step:0', 'step_end:0', 'step:1', 'step_end:1'],
    )
    assert.ok(events.some((e) => e.type === 'stdout' && e.index === 1 && Buffer.from(e.data, 'base64').toString().includes('said-hello')))
    assert.equal(events.at(-1)?.type, 'done')
    assert.deepEqual(await current('tools'), built)
    // The build sandbox is gone; its snapshot stays, for the template stands on it.
    assert.deepEqual(await Sandbox.list(conn), [])
    assert.deepEqual((await listSnapshots(conn)).map((s) => s.id), [result.snapshotId])

    const sb = await Sandbox.create('tools', { ...conn })
    assert.equal(await sh(sb, 'cat /opt/tools/a'), 'one\ntwo\n')
    assert.equal(await sh(sb, 'test -e /etc/debian_version && echo present || echo deleted'), 'deleted\n')
    await sb.kill(conn)
  })

  it('leaves nothing of a build whose second step fails, and names the step with its output', async () => {
    const layersBefore = await layerIds()
    const snapshotsBefore = (await listSnapshots(conn)).map((s) => s.id)
    const events: TemplateBuildEvent[] = []
    const err = await buildGoldenTemplate(
      'broken',
      { from: 'debian', steps: ['echo fine > /fine', 'echo about-to-fail; echo it-broke >&2; exit 3', 'echo never > /never'] },
      { ...conn, onEvent: (e) => events.push(e) },
    ).then(
      () => assert.fail('expected the build to fail'),
      (e: unknown) => e,
    )
    const step = failedStepOf(err)
    assert.equal(step?.index, 1)
    assert.equal(step?.cmd, 'echo about-to-fail; echo it-broke >&2; exit 3')
    assert.equal(step?.exitCode, 3)
    assert.match(step?.output ?? '', /about-to-fail[\s\S]*it-broke|it-broke[\s\S]*about-to-fail/)
    assert.match((err as Error).message, /step 2 of 3/)
    assert.match((err as Error).message, /it-broke/)
    assert.ok(!events.some((e) => e.type === 'step' && e.index === 2), 'the build stops at the failing step')

    assert.equal(await current('broken'), undefined)
    assert.deepEqual(await readdir(templatesDir()).then((d) => d.filter((n) => !n.startsWith('.')).sort()), ['debian', 'tools'])
    assert.deepEqual(await Sandbox.list(conn), [])
    assert.deepEqual(await agent.list(), [])
    assert.deepEqual((await listSnapshots(conn)).map((s) => s.id), snapshotsBefore)
    assert.deepEqual(await layerIds(), layersBefore)
  })

  it('promotes a snapshot to a new version and rolls back to the one before', async () => {
    const sb = await Sandbox.create('tools', { ...conn })
    await sh(sb, 'echo v2 > /opt/tools/version')
    const snap = await sb.snapshot(conn)
    await sb.kill(conn)

    const v2 = await promoteTemplate('tools', snap.id, conn)
    assert.equal(v2.version, 2)
    assert.equal(v2.snapshotId, snap.id)
    assert.equal((await current('tools'))?.version, 2)
    const on2 = await Sandbox.create('tools', { ...conn })
    assert.equal(await sh(on2, 'cat /opt/tools/a /opt/tools/version'), 'one\ntwo\nv2\n')
    await on2.kill(conn)

    const back = await rollbackTemplate('tools', conn)
    assert.equal(back.version, 1)
    assert.equal((await current('tools'))?.version, 1)
    const on1 = await Sandbox.create('tools', { ...conn })
    assert.equal(await sh(on1, 'cat /opt/tools/a; test -e /opt/tools/version && echo present || echo absent'), 'one\ntwo\nabsent\n')
    await on1.kill(conn)

    await assert.rejects(rollbackTemplate('tools', conn), (e: unknown) => e instanceof ConflictError && /expected an older version/.test(e.message))

    // A snapshot that a kept version stands on cannot go, current or not.
    await assert.rejects(deleteSnapshot(snap.id, conn), (e: unknown) => e instanceof ConflictError && /template tools v2/.test(e.message))
    await assert.rejects(deleteSnapshot(built.snapshotId!, conn), (e: unknown) => e instanceof ConflictError && /template tools v1/.test(e.message))
    assert.ok((await listSnapshots(conn)).some((s) => s.id === snap.id))
  })

  it('reports golden for a create on the recorded config and cold for another', async () => {
    const { memoryMiB, cpus } = built.defaults
    const plain = await create({ template: 'tools' })
    assert.equal(plain.source, 'golden')
    const same = await create({ template: 'tools', memoryMiB, cpus })
    assert.equal(same.source, 'golden')
    const other = await create({ template: 'tools', memoryMiB: memoryMiB + 64 })
    assert.equal(other.source, 'cold')
    const fromBase = await create({ template: 'debian' })
    assert.equal(fromBase.source, undefined)
    assert.deepEqual(plain.golden, { version: built.version, snapshotId: built.snapshotId })
    assert.equal(other.golden, undefined)
    for (const s of [plain, same, other, fromBase]) await kill(s.id)
  })

  it('says a pooled sandbox of a golden template came from the pool and which golden version it is', async () => {
    const tools = (await current('tools'))!
    assert.equal((await call('PUT', '/v1/pools/tools', { min: 1, max: 1 })).status, 200)
    try {
      assert.equal((await call('POST', '/v1/pools/tools/wait', { ready: 1 })).status, 200)
      const pooled = await create({ template: 'tools' })
      assert.equal(pooled.source, 'pool')
      assert.deepEqual(pooled.golden, { version: tools.version, snapshotId: tools.snapshotId })
      // The next one is a miss served cold, or a hit if the refill was quick: golden either way.
      const missed = await create({ template: 'tools' })
      assert.deepEqual(missed.golden, { version: tools.version, snapshotId: tools.snapshotId })
      // A promote moves the template on: a sandbox pooled on the old version is not handed out.
      assert.equal((await call('POST', '/v1/pools/tools/wait', { ready: 1 })).status, 200)
      const snap = await (await Sandbox.connect(pooled.id, { ...conn })).snapshot(conn)
      const next = await promoteTemplate('tools', snap.id, conn)
      const after = await create({ template: 'tools' })
      assert.deepEqual(after.golden, { version: next.version, snapshotId: snap.id })
      for (const s of [pooled, missed, after]) await kill(s.id)
    } finally {
      assert.equal((await call('DELETE', '/v1/pools/tools')).status, 204)
    }
  })

  it('builds, promotes and rolls back from the CLI, and exits non-zero naming a failed step', async () => {
    const ok = await cli('template', 'build', 'cli-made', '--from', 'debian', '--run', 'echo from-step-one > /made', '--run', 'echo printed-by-two; echo warned-by-two >&2')
    assert.equal(ok.code, 0, ok.stderr)
    // Lines of their own: the step's header names both words too.
    assert.match(ok.stdout, /^printed-by-two$/m)
    assert.match(ok.stderr, /==> step 2\/2: echo printed-by-two/)
    assert.match(ok.stderr, /^warned-by-two$/m)
    assert.match(ok.stdout, /cli-made version 1 built/)

    const failed = await cli('template', 'build', 'cli-made', '--from', 'debian', '--run', 'true', '--run', 'echo nope >&2; exit 7')
    assert.notEqual(failed.code, 0)
    assert.match(failed.stderr, /step 2 of 2 \("echo nope >&2; exit 7"\) failed with exit code 7: nope/)
    assert.equal((await current('cli-made'))?.version, 1)

    const sb = await Sandbox.create('cli-made', { ...conn })
    assert.equal(await sh(sb, 'cat /made'), 'from-step-one\n')
    const snap = await sb.snapshot(conn)
    await sb.kill(conn)
    const promoted = await cli('template', 'promote', snap.id, '--name', 'cli-made')
    assert.equal(promoted.code, 0, promoted.stderr)
    assert.match(promoted.stdout, /cli-made version 2 is current/)
    const back = await cli('template', 'rollback', 'cli-made')
    assert.equal(back.code, 0, back.stderr)
    assert.match(back.stdout, /cli-made version 1 is current again/)
    const none = await cli('template', 'rollback', 'cli-made')
    assert.notEqual(none.code, 0)
    assert.match(none.stderr, /expected an older version/)
  })
})
