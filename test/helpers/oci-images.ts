/**
 * Test images, made for real: layer tars written here (a static busybox rootfs; a layer with a
 * whiteout and an opaque dir; a top layer of the spec's files), assembled into an OCI layout with
 * umoci, and pushed to a registry or saved as an archive with skopeo.
 */
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { promisify } from 'node:util'
import { createGunzip } from 'node:zlib'
import { extract, pack } from 'tar-stream'
import type { TestRegistry } from './registry.js'
import { sha256Of } from './registry.js'

const run = promisify(execFile)

/** What a test image holds and says. */
export interface TestImageSpec {
  /** Files of the top layer, path (no leading /) → content. */
  files?: Record<string, string>
  /** `NAME=value` entries. */
  env?: string[]
  workingDir?: string
  user?: string
  entrypoint?: string[]
  cmd?: string[]
  /** `80/tcp`, `53/udp`. */
  exposedPorts?: string[]
  labels?: Record<string, string>
  /** The platforms: one gives a manifest, more (or one that is not amd64) an index. @default ['amd64'] */
  platforms?: Array<'amd64' | 'arm64'>
  /** Layer compression in the registry. @default 'gzip' */
  compression?: 'gzip' | 'zstd'
}

/** The names every test image's layers hold, bottom first (the top layer adds `arch-<arch>` and the spec's files). */
export const baseLayerNames = ['bin/busybox', 'bin/sh', 'etc/passwd', 'etc/motd', 'srv/data/a.txt', 'srv/data/b.txt']
/** What the middle layer holds: a whiteout of the base's etc/motd and an opaque srv/data with c.txt. */
export const changeLayerNames = ['etc/.wh.motd', 'srv/data/.wh..wh..opq', 'srv/data/c.txt']

/** One entry of a tar made by `tarOf`. */
export type Entry = { name: string; type?: 'file' | 'directory' | 'symlink'; content?: Buffer | string; mode?: number; linkname?: string }

/** A tar of `entries`, in memory (names as given: tests write hostile ones too). */
export async function tarOf(entries: Entry[]): Promise<Buffer> {
  const p = pack()
  const chunks: Buffer[] = []
  p.on('data', (chunk: unknown) => {
    chunks.push(chunk as Buffer)
  })
  const ended = once(p, 'end')
  const mtime = new Date(0)
  for (const e of entries) {
    const type = e.type ?? 'file'
    if (type === 'file') p.entry({ name: e.name, mode: e.mode ?? 0o644, mtime }, Buffer.from(e.content ?? ''))
    else if (type === 'directory') p.entry({ name: e.name, type, mode: e.mode ?? 0o755, mtime })
    else p.entry({ name: e.name, type, linkname: e.linkname!, mode: 0o777, mtime })
  }
  p.finalize()
  await ended
  return Buffer.concat(chunks)
}

async function layersOf(arch: string, spec: TestImageSpec): Promise<Buffer[]> {
  const busybox = await readFile('/bin/busybox')
  const base = await tarOf([
    { name: 'bin', type: 'directory' },
    { name: 'bin/busybox', content: busybox, mode: 0o755 },
    ...['sh', 'ls', 'cat', 'echo', 'env'].map((applet): Entry => ({ name: `bin/${applet}`, type: 'symlink', linkname: 'busybox' })),
    { name: 'etc', type: 'directory' },
    { name: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' },
    { name: 'etc/group', content: 'root:x:0:\napp:x:1000:\n' },
    { name: 'etc/motd', content: 'from the base layer\n' },
    { name: 'srv', type: 'directory' },
    { name: 'srv/data', type: 'directory' },
    { name: 'srv/data/a.txt', content: 'a\n' },
    { name: 'srv/data/b.txt', content: 'b\n' },
    { name: 'tmp', type: 'directory', mode: 0o1777 },
  ])
  const changes = await tarOf([
    { name: 'etc', type: 'directory' },
    { name: 'etc/.wh.motd', content: '' },
    { name: 'srv/data', type: 'directory' },
    { name: 'srv/data/.wh..wh..opq', content: '' },
    { name: 'srv/data/c.txt', content: 'c\n' },
  ])
  const top = await tarOf([{ name: `arch-${arch}`, content: `${arch}\n` }, ...Object.entries(spec.files ?? {}).map(([name, content]): Entry => ({ name, content }))])
  return [base, changes, top]
}

/** An OCI layout (a temp dir) holding the image of `spec` under tag `image`; `remove` deletes it. */
export async function buildTestLayout(spec: TestImageSpec = {}): Promise<{ layout: string; tag: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-test-image-'))
  const layout = join(dir, 'layout')
  const remove = (): Promise<void> => rm(dir, { recursive: true, force: true })
  try {
    await run('umoci', ['init', '--layout', layout])
    const platforms = spec.platforms ?? ['amd64']
    const manifests: { digest: string; size: number; arch: string }[] = []
    for (const arch of platforms) {
      const image = `${layout}:img-${arch}`
      await run('umoci', ['new', '--image', image])
      for (const [i, tar] of (await layersOf(arch, spec)).entries()) {
        const file = join(dir, `layer-${arch}-${i}.tar`)
        await writeFile(file, tar)
        await run('umoci', ['raw', 'add-layer', '--no-history', '--image', image, file])
      }
      const args = ['config', '--no-history', '--image', image, '--os', 'linux', '--architecture', arch]
      for (const env of spec.env ?? []) args.push('--config.env', env)
      if (spec.workingDir) args.push('--config.workingdir', spec.workingDir)
      if (spec.user) args.push('--config.user', spec.user)
      for (const part of spec.entrypoint ?? []) args.push('--config.entrypoint', part)
      for (const part of spec.cmd ?? []) args.push('--config.cmd', part)
      for (const port of spec.exposedPorts ?? []) args.push('--config.exposedports', port)
      for (const [k, v] of Object.entries(spec.labels ?? {})) args.push('--config.label', `${k}=${v}`)
      await run('umoci', args)
      const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string; size: number; annotations?: Record<string, string> }[] }
      const entry = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === `img-${arch}`)!
      manifests.push({ digest: entry.digest, size: entry.size, arch })
    }
    if (platforms.length === 1 && platforms[0] === 'amd64') return { layout, tag: 'img-amd64', remove }
    // An index over the platforms' manifests, written as skopeo and registries expect it.
    const indexBlob = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: manifests.map((m) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: m.digest, size: m.size, platform: { os: 'linux', architecture: m.arch } })),
    })
    const digest = sha256Of(indexBlob)
    await writeFile(join(layout, 'blobs/sha256', digest.slice(7)), indexBlob)
    const indexPath = join(layout, 'index.json')
    const index = JSON.parse(await readFile(indexPath, 'utf8')) as { manifests: object[] }
    index.manifests.push({ mediaType: 'application/vnd.oci.image.index.v1+json', digest, size: Buffer.byteLength(indexBlob), annotations: { 'org.opencontainers.image.ref.name': 'img' } })
    await writeFile(indexPath, JSON.stringify(index))
    return { layout, tag: 'img', remove }
  } catch (err) {
    await remove()
    throw err
  }
}

/** Pushes the image of `spec` to `registry` as `name[:tag]`; gives its reference and manifest digest. */
export async function pushTestImage(registry: TestRegistry, name: string, spec: TestImageSpec = {}): Promise<{ reference: string; digest: string }> {
  const built = await buildTestLayout(spec)
  try {
    const reference = `${registry.host}/${name.includes(':') ? name : `${name}:latest`}`
    const digestFile = join(built.layout, '..', 'pushed-digest')
    const args = ['copy', '--quiet', '--dest-tls-verify=false', '--digestfile', digestFile]
    if (registry.creds) args.push('--dest-creds', registry.creds)
    if ((spec.platforms ?? ['amd64']).length > 1 || spec.platforms?.[0] !== undefined && spec.platforms[0] !== 'amd64') args.push('--all')
    if (spec.compression === 'zstd') args.push('--format', 'oci', '--dest-compress-format', 'zstd')
    await run('skopeo', [...args, `oci:${built.layout}:${built.tag}`, `docker://${reference}`])
    return { reference, digest: (await readFile(digestFile, 'utf8')).trim() }
  } finally {
    await built.remove()
  }
}

/** Writes the image of `spec` to `path` as a `docker save` tar or an OCI layout tar. */
export async function makeImageArchive(path: string, spec: TestImageSpec, kind: 'docker' | 'oci'): Promise<void> {
  const built = await buildTestLayout(spec)
  try {
    const dest = kind === 'docker' ? `docker-archive:${path}:sandstorm-test/image:latest` : `oci-archive:${path}:latest`
    await run('skopeo', ['copy', '--quiet', ...((spec.platforms?.length ?? 1) > 1 ? ['--all'] : []), `oci:${built.layout}:${built.tag}`, dest])
  } finally {
    await built.remove()
  }
}

/**
 * The entry names of a layer stream (tar, tar+gzip or tar+zstd per `mediaType`), read in memory.
 * Rejects when the stream errors, as a tampered layer's does.
 */
export async function layerEntryNames(stream: Readable, mediaType: string): Promise<string[]> {
  const names: string[] = []
  const tar = extract()
  tar.on('entry', (header, entry, next) => {
    names.push(header.name.replace(/^\.\//, '').replace(/\/$/, ''))
    entry.on('end', () => next()).resume()
  })
  if (mediaType.endsWith('zstd')) {
    const zstd = spawn('zstd', ['-d', '-c', '-q'], { stdio: ['pipe', 'pipe', 'inherit'] })
    const exited = once(zstd, 'exit')
    await Promise.all([pipeline(stream, zstd.stdin), pipeline(zstd.stdout, tar)])
    const [code] = (await exited) as [number | null]
    if (code !== 0) throw new Error(`zstd -d exited ${code}`)
  } else if (mediaType.endsWith('gzip')) {
    await pipeline(stream, createGunzip(), tar)
  } else {
    await pipeline(stream, tar)
  }
  return names
}

/** The entry names of every layer of `source`, bottom first. */
export async function allLayerNames(source: { manifest: { layers: { digest: `sha256:${string}`; mediaType: string; size: number }[] }; openLayer(layer: { digest: `sha256:${string}`; mediaType: string; size: number }): Promise<Readable> }): Promise<string[][]> {
  const all: string[][] = []
  for (const layer of source.manifest.layers) all.push(await layerEntryNames(await source.openLayer(layer), layer.mediaType))
  return all
}
