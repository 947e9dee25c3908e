/**
 * Pulling images for real: a docker-registry on 127.0.0.1 (anonymous, htpasswd and token auth),
 * images made with umoci and pushed with skopeo, and image archives written by skopeo. Layers are
 * read through tar-stream in memory and checked by their entries.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { gzipSync } from 'node:zlib'
import { openImageArchive } from '../src/images/archive/index.js'
import { openRegistryImage } from '../src/images/registry/index.js'
import { parseImageReference } from '../src/images/reference.js'
import type { PullOptions } from '../src/images/contracts.js'
import { SandstormError } from '../src/shared/index.js'
import { allLayerNames, baseLayerNames, tarOf, changeLayerNames, layerEntryNames, makeImageArchive, pushTestImage, type TestImageSpec } from './helpers/oci-images.js'
import { registryToolsMissing, sha256Of, startRegistry, type TestRegistry } from './helpers/registry.js'

const skip = registryToolsMissing() ?? false

/** Pulls `reference` from a registry of this test, on loopback: listed as insecure, as an operator lists a local registry. */
const openLocal = (reference: string, options: PullOptions = {}) => openRegistryImage(reference, { insecureRegistries: [parseImageReference(reference).registry], ...options })

const spec: TestImageSpec = {
  files: { 'srv/app.txt': 'hello\n' },
  env: ['PATH=/bin', 'GREETING=hello world'],
  workingDir: '/srv',
  user: 'app',
  entrypoint: ['/bin/sh', '-c'],
  cmd: ['echo hi'],
  exposedPorts: ['8080/tcp', '53/udp'],
  labels: { 'org.example.role': 'test' },
}

function isError(code: string, ...says: string[]): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof SandstormError, `expected a SandstormError, got ${String(err)}`)
    assert.equal(err.code, code, err.message)
    for (const text of says) assert.ok(err.message.includes(text), `expected "${text}" in: ${err.message}`)
    return true
  }
}

// The layers of the image of `spec`, as the helpers make it.
function assertTestImageLayers(names: string[][], arch = 'amd64'): void {
  assert.equal(names.length, 3)
  for (const name of baseLayerNames) assert.ok(names[0]!.includes(name), `base layer has ${name}: ${names[0]}`)
  for (const name of changeLayerNames) assert.ok(names[1]!.includes(name), `change layer has ${name}: ${names[1]}`)
  assert.deepEqual(names[2], [`arch-${arch}`, 'srv/app.txt'])
}

describe('pulling from a registry', { skip }, () => {
  let registry: TestRegistry
  let pushed: { reference: string; digest: string }

  before(async () => {
    registry = await startRegistry()
    pushed = await pushTestImage(registry, 'team/app:v1', spec)
  })
  after(async () => {
    await registry?.stop()
  })

  it('pulls by tag: the config as defaults, the manifest digest, and layers with a whiteout and an opaque dir', async () => {
    const lines: string[] = []
    const source = await openLocal(pushed.reference, { onProgress: (line) => lines.push(line) })
    try {
      const { manifest } = source
      assert.equal(manifest.reference, pushed.reference)
      assert.equal(manifest.digest, pushed.digest)
      assert.deepEqual(manifest.defaults, {
        env: { PATH: '/bin', GREETING: 'hello world' },
        workingDir: '/srv',
        user: 'app',
        entrypoint: ['/bin/sh', '-c'],
        cmd: ['echo hi'],
        exposedPorts: [53, 8080],
        labels: { 'org.example.role': 'test' },
      })
      assert.equal(manifest.diffIds.length, 3)
      assert.ok(manifest.layers.every((l) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar+gzip'))
      assertTestImageLayers(await allLayerNames(source))
      // Each layer's line comes from whoever stores it (the agent's build host), once.
      assert.ok(lines.some((l) => l.startsWith('pulling manifest')), lines.join('\n'))
    } finally {
      await source.close()
    }
  })

  it('pulls by digest, and says not_found for an unknown tag or digest', async () => {
    const byDigest = await openLocal(`${registry.host}/team/app@${pushed.digest}`)
    assert.equal(byDigest.manifest.digest, pushed.digest)
    assertTestImageLayers(await allLayerNames(byDigest))
    await assert.rejects(openLocal(`${registry.host}/team/app:nope`), isError('not_found', 'nope', `${registry.host}/team/app:nope`))
    await assert.rejects(openLocal(`${registry.host}/team/other`), isError('not_found', 'team/other'))
    const unknown = `sha256:${'0'.repeat(64)}`
    await assert.rejects(openLocal(`${registry.host}/team/app@${unknown}`), isError('not_found', unknown))
  })

  it('picks linux/amd64 from an index, and names the platforms when there is none', async () => {
    const multi = await pushTestImage(registry, 'team/multi:v1', { ...spec, platforms: ['arm64', 'amd64'] })
    const source = await openLocal(multi.reference)
    assert.notEqual(source.manifest.digest, multi.digest, 'the chosen manifest, not the index')
    assertTestImageLayers(await allLayerNames(source), 'amd64')
    const armOnly = await pushTestImage(registry, 'team/arm:v1', { ...spec, platforms: ['arm64'] })
    await assert.rejects(openLocal(armOnly.reference), isError('not_found', 'linux/amd64', 'linux/arm64'))
  })

  it('reads zstd layers', async () => {
    // A registry of its own: skopeo would mount the gzip blobs this one already holds instead of recompressing.
    const own = await startRegistry()
    try {
      const zstd = await pushTestImage(own, 'team/zstd:v1', { ...spec, compression: 'zstd' })
      const source = await openLocal(zstd.reference)
      assert.ok(source.manifest.layers.every((l) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar+zstd'), JSON.stringify(source.manifest.layers))
      assertTestImageLayers(await allLayerNames(source))
    } finally {
      await own.stop()
    }
  })

  it('errors the layer stream of a blob whose bytes were altered, or that is longer than its manifest says', async () => {
    const tampered = await pushTestImage(registry, 'team/tampered:v1', { ...spec, files: { 'srv/app.txt': randomBytes(32).toString('hex') } })
    const source = await openLocal(tampered.reference)
    const top = source.manifest.layers[2]!
    // Same length, other bytes: only the hash can tell.
    const blob = await readFile(registry.blobPath(top.digest))
    blob[blob.length - 1] ^= 0xff
    await writeFile(registry.blobPath(top.digest), blob)
    const stream = await source.openLayer(top)
    const chunks: Buffer[] = []
    await assert.rejects(
      (async () => {
        for await (const chunk of stream) chunks.push(chunk as Buffer)
      })(),
      isError('invalid_argument', top.digest, 'hash to'),
    )

    // A manifest that says a layer is one byte shorter than its blob, PUT under a tag of its own.
    const base = `http://${registry.host}/v2/team/app`
    const original = JSON.parse(await (await fetch(`${base}/manifests/v1`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } })).text()) as { layers: { size: number }[] }
    original.layers[2]!.size -= 1
    const put = await fetch(`${base}/manifests/short`, { method: 'PUT', headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' }, body: JSON.stringify(original) })
    assert.equal(put.status, 201, await put.text())
    const short = await openLocal(`${registry.host}/team/app:short`)
    const layer = short.manifest.layers[2]!
    await assert.rejects(layerEntryNames(await short.openLayer(layer), layer.mediaType), isError('invalid_argument', layer.digest, 'got more'))
  })

  /**
   * A front on 127.0.0.1 that passes requests to the registry, unless `intercept` answers them
   * itself (returns true); its `host` is the registry part of references through it.
   */
  async function startFront(intercept: (path: string, res: import('node:http').ServerResponse) => boolean): Promise<{ host: string; close(): void }> {
    const front: Server = createServer((req, res) => {
      const path = req.url ?? '/'
      if (intercept(path, res)) return
      void fetch(`http://${registry.host}${path}`, { headers: { Accept: String(req.headers.accept ?? '*/*') } }).then(async (answer) => {
        res.writeHead(answer.status, { 'Content-Type': answer.headers.get('content-type') ?? 'application/octet-stream' })
        res.end(Buffer.from(await answer.arrayBuffer()))
      })
    })
    front.listen(0, '127.0.0.1')
    await once(front, 'listening')
    return {
      host: `127.0.0.1:${(front.address() as AddressInfo).port}`,
      close() {
        front.close()
        front.closeAllConnections()
      },
    }
  }

  it('follows a redirect of a blob to another host', async () => {
    let redirects = 0
    // Blobs sent elsewhere, as registries do to blob storage.
    const front = await startFront((path, res) => {
      if (!/\/blobs\/sha256:/.test(path)) return false
      redirects++
      res.writeHead(307, { Location: `http://${registry.host}${path}` }).end()
      return true
    })
    try {
      const source = await openLocal(`${front.host}/team/app:v1`)
      assertTestImageLayers(await allLayerNames(source))
      assert.equal(redirects, 4, 'the config and three layers came by redirect')
    } finally {
      front.close()
    }
  })

  it('retries a registry that answers 503 and 429 and resets connections, then pulls', async () => {
    const failures = ['503', '429', 'reset']
    const seen: string[] = []
    const front = await startFront((path, res) => {
      // Each kind of request fails the first three times, one way each.
      const kind = path.includes('/manifests/') ? 'manifest' : 'blob'
      const failed = seen.filter((s) => s.startsWith(kind)).length
      if (failed >= failures.length) return false
      const how = failures[failed]!
      seen.push(`${kind} ${how}`)
      if (how === 'reset') res.socket?.destroy()
      else res.writeHead(Number(how), how === '429' ? { 'Retry-After': '0' } : {}).end()
      return true
    })
    try {
      const source = await openLocal(`${front.host}/team/app:v1`)
      assertTestImageLayers(await allLayerNames(source))
      assert.deepEqual(seen, ['manifest 503', 'manifest 429', 'manifest reset', 'blob 503', 'blob 429', 'blob reset'])
    } finally {
      front.close()
    }
  })

  it('refuses a manifest pulled by digest whose bytes do not hash to it', async () => {
    const front = await startFront((path, res) => {
      if (!path.includes('/manifests/sha256:')) return false
      void fetch(`http://${registry.host}${path}`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } }).then(async (answer) => {
        res.writeHead(200, { 'Content-Type': answer.headers.get('content-type') ?? '' }).end(`${await answer.text()}\n`)
      })
      return true
    })
    try {
      await assert.rejects(openLocal(`${front.host}/team/app@${pushed.digest}`), isError('invalid_argument', `expected manifest ${pushed.digest}`))
    } finally {
      front.close()
    }
  })

  it('says unavailable, naming the host, for a registry that does not answer', async () => {
    const closed = createServer()
    closed.listen(0, '127.0.0.1')
    await once(closed, 'listening')
    const port = (closed.address() as AddressInfo).port
    closed.close()
    await once(closed, 'close')
    await assert.rejects(openLocal(`127.0.0.1:${port}/team/app:v1`), isError('unavailable', `127.0.0.1:${port}`, 'ECONNREFUSED'))
  })

  it('is cancelled by its signal', async () => {
    const controller = new AbortController()
    controller.abort()
    await assert.rejects(openLocal(pushed.reference, { signal: controller.signal }), isError('canceled'))
  })
})

for (const auth of ['htpasswd', 'token'] as const) {
  describe(`a registry with ${auth} auth`, { skip }, () => {
    let registry: TestRegistry
    let reference: string
    let dir: string

    before(async () => {
      registry = await startRegistry({ auth })
      reference = (await pushTestImage(registry, 'team/private:v1', spec)).reference
      dir = await mkdtemp(join(tmpdir(), 'sandstorm-test-docker-config-'))
    })
    after(async () => {
      await registry?.stop()
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    const options = (extra: PullOptions = {}): PullOptions => ({ dockerConfigPath: join(dir, 'absent.json'), ...extra })

    it('pulls with the right credentials', async () => {
      const source = await openLocal(reference, options({ credentials: { username: 'tester', password: 'secret-pass' } }))
      assertTestImageLayers(await allLayerNames(source))
      if (auth === 'token') assert.ok(registry.tokenRequests.includes('repository:team/private:pull'), registry.tokenRequests.join('\n'))
    })

    it('says which registry refused wrong credentials, and that missing ones are needed', async () => {
      await assert.rejects(openLocal(reference, options({ credentials: { username: 'tester', password: 'wrong' } })), isError('unauthenticated', registry.host, 'refused the credentials of tester', '401'))
      await assert.rejects(openLocal(reference, options({ credentials: { username: 'nobody', password: 'x' } })), isError('unauthenticated', 'refused the credentials of nobody'))
      await assert.rejects(openLocal(reference, options()), isError('unauthenticated', registry.host, 'requires credentials', '401'))
    })

    it('reads credentials from a Docker config.json (auth and username/password)', async () => {
      const withAuth = join(dir, 'auth.json')
      await writeFile(withAuth, JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from('tester:secret-pass').toString('base64') } } }))
      assertTestImageLayers(await allLayerNames(await openLocal(reference, { dockerConfigPath: withAuth })))
      const withFields = join(dir, 'fields.json')
      await writeFile(withFields, JSON.stringify({ auths: { [`https://${registry.host}`]: { username: 'tester', password: 'secret-pass' } } }))
      assertTestImageLayers(await allLayerNames(await openLocal(reference, { dockerConfigPath: withFields })))
      const wrong = join(dir, 'wrong.json')
      await writeFile(wrong, JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from('tester:nope').toString('base64') } } }))
      await assert.rejects(openLocal(reference, { dockerConfigPath: wrong }), isError('unauthenticated', 'refused the credentials'))
    })
  })
}

describe('image archives', { skip }, () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-test-archives-'))
  })
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  for (const kind of ['docker', 'oci'] as const) {
    it(`opens a ${kind === 'docker' ? 'docker save' : 'OCI layout'} tar, and close removes its copy`, async () => {
      const path = join(dir, `${kind}.tar`)
      await makeImageArchive(path, spec, kind)
      const work = await mkdtemp(join(dir, 'work-'))
      const source = await openImageArchive(path, { tmpDir: work })
      assert.equal(source.manifest.defaults.workingDir, '/srv')
      assert.deepEqual(source.manifest.defaults.env, { PATH: '/bin', GREETING: 'hello world' })
      assert.deepEqual(source.manifest.defaults.exposedPorts, [53, 8080])
      const expectedType = kind === 'docker' ? 'application/vnd.docker.image.rootfs.diff.tar' : 'application/vnd.oci.image.layer.v1.tar+gzip'
      assert.ok(source.manifest.layers.every((l) => l.mediaType === expectedType), JSON.stringify(source.manifest.layers))
      if (kind === 'docker') assert.deepEqual(source.manifest.layers.map((l) => l.digest), source.manifest.diffIds)
      assertTestImageLayers(await allLayerNames(source))
      assert.equal((await readdir(work)).length, 1)
      await source.close()
      await source.close()
      assert.deepEqual(await readdir(work), [])
    })
  }

  it('picks linux/amd64 from an OCI archive with an index', async () => {
    const path = join(dir, 'multi.tar')
    await makeImageArchive(path, { ...spec, platforms: ['arm64', 'amd64'] }, 'oci')
    const source = await openImageArchive(path)
    try {
      assertTestImageLayers(await allLayerNames(source), 'amd64')
    } finally {
      await source.close()
    }
  })

  it('follows links inside a docker save archive but never outside it, and checks layers against their diffIDs', async () => {
    const layer = await tarOf([{ name: 'hello.txt', content: 'hi\n' }])
    const diffId = sha256Of(layer)
    const config = JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Env: ['A=b'] }, rootfs: { type: 'layers', diff_ids: [diffId, diffId] } })
    const manifest = (layers: string[]): string => JSON.stringify([{ Config: 'config.json', RepoTags: ['x/y:z'], Layers: layers }])
    const hostile = [
      { name: 'config.json', content: config },
      { name: 'a/layer.tar', content: layer },
      // docker save links a repeated layer to its first copy.
      { name: 'b/layer.tar', type: 'symlink' as const, linkname: '../a/layer.tar' },
      { name: '../../escaped.txt', content: 'should not land anywhere' },
      { name: 'passwd-link', type: 'symlink' as const, linkname: '/etc/passwd' },
      { name: 'up-link', type: 'symlink' as const, linkname: '../../../etc/passwd' },
    ]
    const work = await mkdtemp(join(dir, 'work-'))
    const good = join(dir, 'links.tar')
    await writeFile(good, await tarOf([...hostile, { name: 'manifest.json', content: manifest(['a/layer.tar', 'b/layer.tar']) }]))
    const source = await openImageArchive(good, { tmpDir: work })
    assert.deepEqual(source.manifest.layers.map((l) => l.digest), [diffId, diffId])
    assert.deepEqual(await allLayerNames(source), [['hello.txt'], ['hello.txt']])
    const [copy] = await readdir(work)
    assert.ok((await readdir(join(work, copy!))).every((name) => /^entry-\d+$/.test(name)), 'only files named by the reader')
    await source.close()
    await assert.rejects(stat(join(dir, '..', 'escaped.txt')), { code: 'ENOENT' })

    for (const [name, layers, says] of [
      ['outside', ['passwd-link', 'a/layer.tar'], 'layer passwd-link'],
      ['up', ['up-link', 'a/layer.tar'], 'layer up-link'],
      ['escaped', ['../../escaped.txt', 'a/layer.tar'], 'layer ../../escaped.txt'],
      ['altered', ['config.json', 'a/layer.tar'], `to hash to its diff_id ${diffId}`],
    ] as const) {
      const path = join(dir, `${name}.tar`)
      await writeFile(path, await tarOf([...hostile, { name: 'manifest.json', content: manifest([...layers]) }]))
      await assert.rejects(openImageArchive(path, { tmpDir: work }), isError('invalid_argument', says))
    }
    assert.deepEqual(await readdir(work), [])
  })

  it('reads a gzipped archive; refuses a truncated one and one without an image, leaving no temp dir', async () => {
    const full = join(dir, 'full.tar')
    await makeImageArchive(full, spec, 'docker')
    const size = (await stat(full)).size
    const cut = join(dir, 'cut.tar')
    const handle = await open(full, 'r')
    const half = Buffer.alloc(Math.floor(size / 2) + 100)
    await handle.read(half, 0, half.length, 0)
    await handle.close()
    await writeFile(cut, half)
    const work = await mkdtemp(join(dir, 'work-'))
    await assert.rejects(openImageArchive(cut, { tmpDir: work }), isError('invalid_argument', cut))
    assert.deepEqual(await readdir(work), [])

    // `docker save | gzip` is read as well.
    const gzipped = join(dir, 'full.tar.gz')
    await writeFile(gzipped, gzipSync(await readFile(full)))
    const fromGzip = await openImageArchive(gzipped, { tmpDir: work })
    assertTestImageLayers(await allLayerNames(fromGzip))
    await fromGzip.close()

    const empty = join(dir, 'empty.tar')
    await writeFile(empty, Buffer.alloc(1024))
    await assert.rejects(openImageArchive(empty, { tmpDir: work }), isError('invalid_argument', 'manifest.json', 'oci-layout'))
    await assert.rejects(openImageArchive(join(dir, 'absent.tar'), { tmpDir: work }), isError('not_found'))
    assert.deepEqual(await readdir(work), [])
  })
})
