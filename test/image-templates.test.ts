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
import { buildTemplate, deletePool, deleteSnapshot, deleteTemplate, listPools, listTemplates, pruneTemplateLayers, Sandbox, setPool, waitForPool, type TemplateBuildEvent } from '@sandstorm/sdk/node'
import { runCli } from './helpers/cli-process.js'
import { writeFile } from 'node:fs/promises'
import { makeImageArchive, pushTestImage, tarOf, type Entry } from './helpers/oci-images.js'
import { registryToolsMissing, sha256Of, startRegistry, type TestRegistry } from './helpers/registry.js'
import { scratchTemplatesDir, skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? registryToolsMissing() ?? null

/** The layer dirs in a template dir's layer store. */
async function storedLayers(dir: string): Promise<string[]> {
  return (await readdir(join(dir, '.layers')).catch(() => [])).filter((n) => /^[0-9a-f]{64}$/.test(n)).sort()
}

describe('templates from OCI images', { skip: skip ?? false }, () => {
  let registry: TestRegistry
  /** A registry that wants credentials (started with the stack, which lists both as insecure). */
  let locked: TestRegistry
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
    locked = await startRegistry({ auth: 'htpasswd' })
    templates = await scratchTemplatesDir()
    // A small layer limit, so that a layer bomb is a few MiB.
    stack = await startStack({ templatesDir: templates.dir, maxLayerBytes: 4 * 1024 * 1024, insecureRegistries: [registry.host, locked.host] })
  })
  after(async () => {
    await stack?.close()
    await registry?.stop()
    await locked?.stop()
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

  test('a restored sandbox and a fork from a warm pool keep the image\'s env under the create\'s', async () => {
    const sbx = await Sandbox.create('app', { ...stack.conn, env: { OWN: 'mine' } })
    let snapshotId: string | undefined
    const forks: Sandbox[] = []
    try {
      await sbx.commands.run('echo kept > /app/state.txt', { user: 'root' })
      snapshotId = (await sbx.snapshot(stack.conn)).id
      await sbx.restore(snapshotId, stack.conn)
      const env = 'echo "$GREETING/$OWN"; cat /app/state.txt'
      assert.equal((await sbx.commands.run(env)).stdout, 'hi there/mine\nkept\n')
      // A fork that takes a pooled sandbox of the template is restored the same way.
      await setPool('app', { ...stack.conn, min: 1, max: 1 })
      await waitForPool('app', { ...stack.conn, ready: 1, waitMs: 120_000 })
      const hits = async () => (await listPools(stack.conn)).find((p) => p.template === 'app')?.hits ?? 0
      const before = await hits()
      forks.push(...(await Sandbox.fork(snapshotId, { ...stack.conn, count: 1 })))
      assert.equal(await hits(), before + 1, 'the fork took the pooled sandbox')
      assert.equal((await forks[0]!.commands.run(env)).stdout, 'hi there/mine\nkept\n')
    } finally {
      await deletePool('app', stack.conn).catch(() => undefined)
      for (const f of forks) await f.kill()
      await sbx.kill()
      if (snapshotId) await deleteSnapshot(snapshotId, stack.conn)
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
      // A registry on the host that the operator did not list: refused before any request.
      ['127.0.0.1:1/team/app:1.0', /^registry 127\.0\.0\.1:1: refused, 127\.0\.0\.1 is loopback/],
    ]
    for (const [ref, pattern] of cases) {
      await assert.rejects(buildTemplate('bad', { ...stack.conn, image: ref }), (err: Error) => pattern.test(err.message) || assert.fail(`${ref}: ${err.message}`))
    }
    await assert.rejects(buildTemplate('Bad Name', { ...stack.conn, image: image.reference }), /template name/)
    assert.deepEqual((await listTemplates(stack.conn)).map((t) => t.name), namesBefore)
    assert.deepEqual(await storedLayers(templates.dir), layersBefore)
    assert.deepEqual((await readdir(templates.dir)).filter((n) => n.startsWith('.build-') || n.startsWith('.tmp')), [])
  })

  test('a registry that wants credentials: right ones pull, wrong and missing ones are named as refused', async () => {
    const pushed = await pushTestImage(locked, 'private/app:1', { files: { 'secret.txt': 'ok\n' } })
    const [username, password] = locked.creds!.split(':') as [string, string]
    await buildTemplate('private', { ...stack.conn, image: pushed.reference, registryAuth: { username, password } })
    await deleteTemplate('private', stack.conn)
    await assert.rejects(buildTemplate('private', { ...stack.conn, image: pushed.reference, registryAuth: { username, password: 'wrong' } }), (err: Error) => /refused the credentials|401/.test(err.message) || assert.fail(err.message))
    await assert.rejects(buildTemplate('private', { ...stack.conn, image: pushed.reference }), (err: Error) => /requires credentials|401/.test(err.message) || assert.fail(err.message))
  })

  test('a blob that does not match its digest fails the build and leaves no layer', async () => {
    const tampered = await pushTestImage(registry, 'team/tampered:1', { files: { 'victim.txt': 'original content\n' } })
    const layersBefore = await storedLayers(templates.dir)
    // The top layer's blob, changed in the registry's storage (same length: only the hash can tell).
    const manifest = JSON.parse(await (await fetch(`http://${registry.host}/v2/team/tampered/manifests/${tampered.digest}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).text()) as { layers: { digest: string }[] }
    const top = manifest.layers.at(-1)!.digest
    const { readFile } = await import('node:fs/promises')
    const blob = await readFile(registry.blobPath(top))
    blob[blob.length - 20] ^= 0xff
    await writeFile(registry.blobPath(top), blob)
    await assert.rejects(buildTemplate('tampered', { ...stack.conn, image: tampered.reference }), (err: Error) => /sha256|digest|hash/.test(err.message) || assert.fail(err.message))
    assert.deepEqual(await storedLayers(templates.dir), layersBefore)
    assert.ok(!(await listTemplates(stack.conn)).some((t) => t.name === 'tampered'))
  })

  test('hostile archives: a path that escapes, a write through a symlink, a layer bomb past the limit; nothing is left', async () => {
    const work = await mkdtemp(join(tmpdir(), 'sandstorm-test-hostile-'))
    const layersBefore = await storedLayers(templates.dir)
    try {
      const cases: [string, Entry[], RegExp][] = [
        ['escape', [{ name: '../../escaped.txt', content: 'x' }], /leave|escape|\.\./],
        ['symlink', [{ name: 'evil', type: 'symlink', linkname: '/etc' }, { name: 'evil/planted', content: 'x' }], /symlink/],
        ['bomb', [{ name: 'big.bin', content: Buffer.alloc(5 * 1024 * 1024) }], /more than 4194304 bytes|limit/],
      ]
      for (const [name, entries, says] of cases) {
        const layer = await tarOf(entries)
        const diffId = sha256Of(layer)
        const config = JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [diffId] } })
        const path = join(work, `${name}.tar`)
        await writeFile(path, await tarOf([
          { name: 'config.json', content: config },
          { name: 'l/layer.tar', content: layer },
          { name: 'manifest.json', content: JSON.stringify([{ Config: 'config.json', RepoTags: [`hostile/${name}:1`], Layers: ['l/layer.tar'] }]) },
        ]))
        await assert.rejects(buildTemplate(`hostile-${name}`, { ...stack.conn, imageArchive: path }), (err: Error) => says.test(err.message) || assert.fail(`${name}: ${err.message}`))
      }
      await assert.rejects(import('node:fs/promises').then((fs) => fs.stat('/etc/planted')), { code: 'ENOENT' })
      assert.deepEqual(await storedLayers(templates.dir), layersBefore)
      assert.deepEqual((await readdir(join(templates.dir, '.layers'))).filter((n) => n.startsWith('.tmp')), [])
      assert.ok(!(await listTemplates(stack.conn)).some((t) => t.name.startsWith('hostile-')))
    } finally {
      await rm(work, { recursive: true, force: true })
    }
  })

  test('a failed Dockerfile build keeps its cached steps until a prune; deleting a template leaves other builds\' cache', async () => {
    const context = await mkdtemp(join(tmpdir(), 'sandstorm-test-prune-'))
    try {
      await writeFile(join(context, 'data.txt'), 'cached step\n')
      await writeFile(join(context, 'Dockerfile'), 'FROM app\nCOPY data.txt /data.txt\nRUN exit 3\n')
      const before = await storedLayers(templates.dir)
      await assert.rejects(buildTemplate('fails', { ...stack.conn, context }), (err: Error) => /exit code 3/.test(err.message) || assert.fail(err.message))
      assert.equal((await storedLayers(templates.dir)).length, before.length + 1, 'the COPY step is cached')
      // Deleting another template sweeps only that template's layers.
      await buildTemplate('doomed', { ...stack.conn, image: other.reference })
      await deleteTemplate('doomed', stack.conn)
      assert.equal((await storedLayers(templates.dir)).length, before.length + 1, 'the cache outlives another delete')
      assert.deepEqual(await pruneTemplateLayers(stack.conn), { removedLayers: 1 })
      assert.deepEqual(await storedLayers(templates.dir), before)
    } finally {
      await rm(context, { recursive: true, force: true })
    }
  })

  test('a malformed build request answers 400 naming the field, before anything is built', async () => {
    const post = (query: string, body: BodyInit, type = 'application/x-tar') =>
      fetch(`${stack.conn.apiUrl}/v1/templates/bad/build?${query}`, { method: 'POST', headers: { authorization: `Bearer ${stack.conn.apiKey}`, 'content-type': type }, body })
    const context = new Uint8Array(await tarOf([{ name: 'app.txt', content: 'x' }]))
    const cases: [string, BodyInit, string | undefined, RegExp][] = [
      ['source=dockerfile', context, undefined, /dockerfile: expected "Dockerfile" in the build context/],
      ['source=dockerfile&dockerfile=../Dockerfile', context, undefined, /dockerfile: expected a path inside the context/],
      ['source=dockerfile&buildArgs=%7Bnot-json', context, undefined, /buildArgs|JSON/],
      ['source=elsewhere', context, undefined, /source/],
      ['source=archive&memoryMiB=lots', context, undefined, /memoryMiB/],
      ['', JSON.stringify({ image: 42 }), 'application/json', /image/],
      ['', JSON.stringify({ image: 'x', registryAuth: { username: '' } }), 'application/json', /registryAuth/],
    ]
    for (const [query, body, type, says] of cases) {
      const res = await post(query, body, type)
      const text = await res.text()
      assert.equal(res.status, 400, `${query} ${text}`)
      assert.match((JSON.parse(text) as { message: string }).message, says, query)
    }
    assert.ok(!(await listTemplates(stack.conn)).some((t) => t.name === 'bad'))
    assert.deepEqual(await readdir(join(stack.dataDir, 'uploads')).catch(() => []), [], 'no upload is left')
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
