/**
 * Templates from OCI images, through the API, the SDK and the CLI, against a real docker-registry
 * on loopback and real runc sandboxes: pulls by tag and digest, config defaults, a start command,
 * layers shared between templates and freed when nothing stands on them, archives, and bad input
 * that leaves nothing behind.
 */
import assert from 'node:assert/strict'
import { readdir } from 'node:fs/promises'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { buildTemplate, deleteTemplate, listTemplates, Sandbox, type TemplateBuildEvent } from '../src/sdk/index.js'
import { runCli } from './helpers/cli-process.js'
import { makeImageArchive, pushTestImage } from './helpers/oci-images.js'
import { registryToolsMissing, startRegistry, type TestRegistry } from './helpers/registry.js'
import { scratchTemplatesDir, skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? registryToolsMissing() ?? null

/** The layer dirs in a template dir's layer store. */
async function storedLayers(dir: string): Promise<string[]> {
  return (await readdir(join(dir, '.layers')).catch(() => [])).filter((n) => /^[0-9a-f]{64}$/.test(n)).sort()
}

describe('templates from OCI images', { skip: skip ?? false }, () => {
  let registry: TestRegistry
  let stack: Stack
  let templates: { dir: string; remove(): Promise<void> }
  let image: { reference: string; digest: string }
  let other: { reference: string; digest: string }

  before(async () => {
    registry = await startRegistry()
    image = await pushTestImage(registry, 'team/app:1.0', {
      files: { 'app/hello.txt': 'hello from the image\n' },
      env: ['GREETING=hi there', 'PATH=/usr/local/bin:/usr/bin:/bin'],
      workingDir: '/app',
      user: '1000:1000',
      cmd: ['sh', '-c', 'echo from cmd'],
      exposedPorts: ['8080/tcp'],
      labels: { 'org.example.team': 'sandstorm' },
    })
    other = await pushTestImage(registry, 'team/other:latest', { files: { 'other.txt': 'other\n' } })
    templates = await scratchTemplatesDir()
    stack = await startStack({ templatesDir: templates.dir })
  })
  after(async () => {
    await stack?.close()
    await registry?.stop()
    await templates?.remove()
  })

  test('a pull by tag becomes a template whose sandboxes have the image files, whiteouts applied, and its config as defaults', async () => {
    const events: TemplateBuildEvent[] = []
    const { template } = await buildTemplate('app', { ...stack.conn, image: image.reference, onEvent: (e) => events.push(e) })
    assert.deepEqual(template.source, { kind: 'image', reference: image.reference, digest: image.digest })
    assert.equal(template.config?.workingDir, '/app')
    assert.equal(template.config?.user, '1000:1000')
    assert.deepEqual(template.config?.exposedPorts, [8080])
    assert.deepEqual(template.config?.cmd, ['sh', '-c', 'echo from cmd'])
    assert.equal(template.config?.labels['org.example.team'], 'sandstorm')
    assert.ok(events.some((e) => e.type === 'progress' && e.message.includes('layer')), 'progress names the layers')
    const sbx = await Sandbox.create('app', { ...stack.conn })
    try {
      const r = await sbx.commands.run('echo "$GREETING"; pwd; id -u; id -g; cat hello.txt; ls /srv/data; test -e /etc/motd || echo motd-gone')
      assert.equal(r.stdout, 'hi there\n/app\n1000\n1000\nhello from the image\nc.txt\nmotd-gone\n')
      // A command's own user and cwd win over the image's.
      const root = await sbx.commands.run('id -u; pwd', { user: 'root', cwd: '/' })
      assert.equal(root.stdout, '0\n/\n')
    } finally {
      await sbx.kill()
    }
  })

  test('a pull by digest, and a second template on the same base, add only the layers they do not share', async () => {
    const dir = templates.dir
    const before = await storedLayers(dir)
    const byDigest = await buildTemplate('app-pinned', { ...stack.conn, image: `${image.reference.split(':1.0')[0]}@${image.digest}` })
    assert.equal(byDigest.template.source?.digest, image.digest)
    assert.deepEqual(await storedLayers(dir), before, 'the same image by digest stores nothing new')
    await buildTemplate('other', { ...stack.conn, image: other.reference })
    const withOther = await storedLayers(dir)
    assert.equal(withOther.length, before.length + 1, 'only the other image\'s top layer is new')
    const list = await listTemplates(stack.conn)
    const otherInfo = list.find((t) => t.name === 'other')!
    assert.ok((otherInfo.sharedBytes ?? 0) > 0 && otherInfo.sharedBytes! < otherInfo.sizeBytes, `shared ${otherInfo.sharedBytes} of ${otherInfo.sizeBytes}`)

    // Deleting frees only what nothing else stands on.
    assert.deepEqual(await deleteTemplate('other', stack.conn), { removedLayers: 1 })
    assert.deepEqual(await storedLayers(dir), before)
    assert.deepEqual(await deleteTemplate('app-pinned', stack.conn), { removedLayers: 0 }, 'app still stands on every layer')
    assert.ok(!(await listTemplates(stack.conn)).some((t) => t.name === 'other' || t.name === 'app-pinned'))
  })

  test('a template in use cannot be deleted; an unknown one is not found', async () => {
    const sbx = await Sandbox.create('app', { ...stack.conn })
    try {
      await assert.rejects(deleteTemplate('app', stack.conn), (err: Error) => /cannot be deleted: .*sandbox .* runs on it/.test(err.message))
    } finally {
      await sbx.kill()
    }
    await assert.rejects(deleteTemplate('no-such-template', stack.conn), (err: Error) => /unknown template "no-such-template"/.test(err.message))
  })

  test('an image template with a start command runs it at create', async () => {
    await buildTemplate('app-start', {
      ...stack.conn,
      image: image.reference,
      start: { cmd: 'echo started > /tmp/started; exec sleep 1000', user: 'root', ready: { type: 'command', cmd: 'test -e /tmp/started' } },
    })
    const sbx = await Sandbox.create('app-start', { ...stack.conn })
    try {
      assert.equal((await sbx.commands.run('cat /tmp/started')).stdout, 'started\n')
    } finally {
      await sbx.kill()
      await deleteTemplate('app-start', stack.conn)
    }
  })

  test('docker save and OCI archives upload as templates', async () => {
    const work = await mkdtemp(join(tmpdir(), 'sandstorm-test-archives-'))
    try {
      for (const kind of ['docker', 'oci'] as const) {
        const path = join(work, `${kind}.tar`)
        await makeImageArchive(path, { files: { 'from-archive.txt': `${kind}\n` }, env: ['KIND=' + kind] }, kind)
        const { template } = await buildTemplate(`arch-${kind}`, { ...stack.conn, imageArchive: path })
        assert.equal(template.source?.kind, 'archive')
        const sbx = await Sandbox.create(`arch-${kind}`, { ...stack.conn })
        try {
          assert.equal((await sbx.commands.run('cat /from-archive.txt; echo "$KIND"')).stdout, `${kind}\n${kind}\n`)
        } finally {
          await sbx.kill()
        }
        await deleteTemplate(`arch-${kind}`, stack.conn)
      }
    } finally {
      await rm(work, { recursive: true, force: true })
    }
  })

  test('bad input: each gets an error naming the cause, and leaves no template and no layer', async () => {
    const layersBefore = await storedLayers(templates.dir)
    const namesBefore = (await listTemplates(stack.conn)).map((t) => t.name)
    const cases: [string, RegExp][] = [
      ['Not A Reference!', /image reference/],
      [`${registry.host}/team/app:no-such-tag`, /has no manifest no-such-tag in team\/app/],
      [`${registry.host}/team/app@sha256:${'0'.repeat(64)}`, /has no manifest sha256:0+ in team\/app/],
      ['127.0.0.1:1/team/app:1.0', /could not reach 127\.0\.0\.1:1/],
    ]
    for (const [ref, pattern] of cases) {
      await assert.rejects(buildTemplate('bad', { ...stack.conn, image: ref }), (err: Error) => pattern.test(err.message) || assert.fail(`${ref}: ${err.message}`))
    }
    await assert.rejects(buildTemplate('Bad Name', { ...stack.conn, image: image.reference }), /template name/)
    assert.deepEqual((await listTemplates(stack.conn)).map((t) => t.name), namesBefore)
    assert.deepEqual(await storedLayers(templates.dir), layersBefore)
    assert.deepEqual((await readdir(templates.dir)).filter((n) => n.startsWith('.build-') || n.startsWith('.tmp')), [])
  })

  test('the CLI builds from an image and lists it with its shared size, source and digest', async () => {
    const built = await runCli(stack, 'template', 'build', 'cli-app', '--image', image.reference)
    assert.equal(built.code, 0, built.stderr)
    assert.match(built.stdout, /cli-app version 1 built in .* from 127\.0\.0\.1:\d+\/team\/app:1\.0/)
    const ls = await runCli(stack, 'template', 'ls')
    assert.equal(ls.code, 0, ls.stderr)
    const row = ls.stdout.split('\n').find((l) => l.startsWith('cli-app '))
    assert.ok(row?.includes(image.digest.slice(0, 19)), ls.stdout)
    const rm = await runCli(stack, 'template', 'rm', 'cli-app')
    assert.equal(rm.code, 0, rm.stderr)
    assert.match(rm.stdout, /cli-app deleted/)
  })
})
