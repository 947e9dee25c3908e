/**
 * An image archive as an ImageSource: a `docker save` tar (manifest.json, <id>.tar layers) or an
 * OCI image layout tar (oci-layout, index.json, blobs/sha256/…), maybe with an index.
 */
import { createReadStream } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { z } from 'zod'
import { linkSignal, SandstormError, type CallOptions } from '../../shared/index.js'
import type { Digest, ImageManifest, ImageSource, LayerDescriptor } from '../contracts.js'
import { imageDefaultsOf } from '../image-config.js'
import { formatBytes } from '../../shared/index.js'
import { parseManifestDocument, pickPlatform, type Descriptor } from '../registry/manifest.js'
import { verifyingStream } from '../registry/verifying-stream.js'
import { fileOf, fileStartsWith, readArchiveEntries, type ArchiveEntries, type ArchiveFile } from './archive-entries.js'

/** Options of opening an image archive. */
export interface ImageArchiveOptions extends CallOptions {
  /** Which image of an archive holding several: a `RepoTags` entry (docker save) or `org.opencontainers.image.ref.name` (OCI). @default the only one */
  tag?: string
  /** Where the archive's blobs are copied while the source is open. @default the system temp dir */
  tmpDir?: string
  /** The most the archive's files may unpack to. @default readArchiveEntries' (32 GiB) */
  maxUnpackedBytes?: number
  /** Progress lines. */
  onProgress?: (line: string) => void
}

const maxJsonBytes = 8 * 1024 * 1024
const ociRefName = 'org.opencontainers.image.ref.name'
const dockerTar = 'application/vnd.docker.image.rootfs.diff.tar'

const dockerManifestSchema = z.array(
  z.object({ Config: z.string(), RepoTags: z.array(z.string()).nullish(), Layers: z.array(z.string()) }),
)

/** Opens the image archive at `path`; a malformed or truncated one is `invalid_argument`, naming what is missing. */
export async function openImageArchive(path: string, options: ImageArchiveOptions = {}): Promise<ImageSource> {
  const signal = linkSignal(options)
  const dir = await mkdtemp(join(options.tmpDir ?? tmpdir(), 'sandstorm-image-archive-'))
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await rm(dir, { recursive: true, force: true })
  }
  try {
    options.onProgress?.(`reading image archive ${path}`)
    const entries = await readArchiveEntries(path, dir, signal, options.maxUnpackedBytes !== undefined ? { maxBytes: options.maxUnpackedBytes } : {})
    const what = `archive ${path}`
    const opened = entries.files.has('oci-layout') && entries.files.has('index.json')
      ? await openOciLayout(entries, what, options.tag)
      : entries.files.has('manifest.json')
        ? await openDockerSave(entries, what, options.tag)
        : missing(what, 'manifest.json (docker save) or oci-layout and index.json (OCI image layout)')
    const { manifest, files } = opened
    return {
      manifest: { ...manifest, reference: path },
      async openLayer(layer: LayerDescriptor, callOptions: CallOptions = {}): Promise<Readable> {
        const file = files.get(layer.digest)
        if (!file || closed) throw new SandstormError(closed ? 'failed_precondition' : 'invalid_argument', closed ? `${what}: the source is closed` : `${what}: expected one of its layers, got ${layer.digest}`)
        options.onProgress?.(`layer ${layer.digest} ${formatBytes(file.sizeBytes)}`)
        const stream = createReadStream(file.path, { signal: linkSignal(callOptions) })
        const verifier = verifyingStream(layer.digest, layer.size)
        stream.on('error', (err) => verifier.destroy(SandstormError.from(err)))
        verifier.on('close', () => stream.destroy())
        return stream.pipe(verifier)
      },
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}

interface Opened {
  manifest: ImageManifest
  /** Each layer's file, by the layer's digest. */
  files: Map<Digest, ArchiveFile>
}

function missing(what: string, expected: string): never {
  throw new SandstormError('invalid_argument', `${what}: expected ${expected}, got none (is the archive complete?)`)
}

async function readJson(file: ArchiveFile, what: string, name: string): Promise<unknown> {
  if (file.sizeBytes > maxJsonBytes) throw new SandstormError('invalid_argument', `${what}: expected ${name} of at most ${maxJsonBytes} bytes, got ${file.sizeBytes}`)
  try {
    return JSON.parse(await readFile(file.path, 'utf8'))
  } catch {
    throw new SandstormError('invalid_argument', `${what}: expected JSON in ${name}, got something else`)
  }
}

// A blob of the OCI layout, checked against its descriptor (the copy hashed it).
function ociBlob(entries: ArchiveEntries, what: string, descriptor: Descriptor): ArchiveFile {
  const name = `blobs/sha256/${descriptor.digest.slice('sha256:'.length)}`
  const file = fileOf(entries, name) ?? missing(what, name)
  if (file.digest !== descriptor.digest || file.sizeBytes !== descriptor.size) {
    throw new SandstormError('invalid_argument', `${what}: expected ${name} of ${descriptor.size} bytes, got ${file.sizeBytes} bytes that hash to ${file.digest}`)
  }
  return file
}

async function openOciLayout(entries: ArchiveEntries, what: string, tag: string | undefined): Promise<Opened> {
  const indexFile = fileOf(entries, 'index.json')!
  if (indexFile.sizeBytes > maxJsonBytes) throw new SandstormError('invalid_argument', `${what}: expected index.json of at most ${maxJsonBytes} bytes, got ${indexFile.sizeBytes}`)
  const index = parseManifestDocument(await readFile(indexFile.path), undefined, `${what} index.json`)
  if (index.kind !== 'index') throw new SandstormError('invalid_argument', `${what}: expected index.json to be an image index, got a manifest`)
  let candidates = index.manifests
  if (tag !== undefined) {
    candidates = candidates.filter((m) => (m as { annotations?: Record<string, string> }).annotations?.[ociRefName] === tag)
    if (candidates.length === 0) throw new SandstormError('not_found', `${what}: expected an image tagged ${JSON.stringify(tag)}, got none`)
  }
  let chosen = candidates.length === 1 ? candidates[0]! : pickPlatform(candidates, what)
  for (let depth = 0; ; depth++) {
    const file = ociBlob(entries, what, chosen)
    if (file.sizeBytes > maxJsonBytes) throw new SandstormError('invalid_argument', `${what}: expected a manifest of at most ${maxJsonBytes} bytes, got ${file.sizeBytes}`)
    const doc = parseManifestDocument(await readFile(file.path), chosen.mediaType, what)
    if (doc.kind === 'index') {
      if (depth > 2) throw new SandstormError('invalid_argument', `${what}: expected a manifest under its index, got indexes nested too deep`)
      chosen = pickPlatform(doc.manifests, what)
      continue
    }
    const configFile = ociBlob(entries, what, doc.config)
    const { defaults, diffIds } = imageDefaultsOf(await readJson(configFile, what, 'the image config'))
    if (diffIds.length !== doc.layers.length) {
      throw new SandstormError('invalid_argument', `${what}: expected as many diff_ids in its config as layers in its manifest (${doc.layers.length}), got ${diffIds.length}`)
    }
    const files = new Map<Digest, ArchiveFile>()
    for (const layer of doc.layers) files.set(layer.digest, ociBlob(entries, what, { ...layer }))
    return { manifest: { reference: what, digest: chosen.digest, defaults, diffIds, layers: doc.layers }, files }
  }
}

async function openDockerSave(entries: ArchiveEntries, what: string, tag: string | undefined): Promise<Opened> {
  const parsed = dockerManifestSchema.safeParse(await readJson(fileOf(entries, 'manifest.json')!, what, 'manifest.json'))
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new SandstormError('invalid_argument', `${what}: expected manifest.json as docker save writes it, got ${issue?.path.join('.') || 'the document'}: ${issue?.message}`)
  }
  const images = parsed.data
  const image =
    tag !== undefined
      ? images.find((i) => i.RepoTags?.includes(tag)) ?? missing(what, `an image tagged ${JSON.stringify(tag)} in manifest.json`)
      : images.length === 1
        ? images[0]!
        : images.length === 0
          ? missing(what, 'an image in manifest.json')
          : (() => {
              throw new SandstormError('invalid_argument', `${what}: expected one image or a tag to choose by, got ${images.length} images (${images.map((i) => i.RepoTags?.join(' ') || 'untagged').join(', ')})`)
            })()
  const configFile = fileOf(entries, image.Config) ?? missing(what, `its config ${image.Config}`)
  const { defaults, diffIds } = imageDefaultsOf(await readJson(configFile, what, image.Config))
  if (diffIds.length !== image.Layers.length) {
    throw new SandstormError('invalid_argument', `${what}: expected as many diff_ids in its config as layers in manifest.json (${image.Layers.length}), got ${diffIds.length}`)
  }
  const files = new Map<Digest, ArchiveFile>()
  const layers: LayerDescriptor[] = []
  for (const [i, name] of image.Layers.entries()) {
    const file = fileOf(entries, name) ?? missing(what, `layer ${name}`)
    const mediaType = (await fileStartsWith(file.path, [0x1f, 0x8b]))
      ? `${dockerTar}.gzip`
      : (await fileStartsWith(file.path, [0x28, 0xb5, 0x2f, 0xfd]))
        ? `${dockerTar}.zstd`
        : dockerTar
    // An uncompressed layer's digest is its diffID: the config vouches for the layer's bytes.
    if (mediaType === dockerTar && file.digest !== diffIds[i]) {
      throw new SandstormError('invalid_argument', `${what}: expected layer ${name} to hash to its diff_id ${diffIds[i]}, got ${file.digest}`)
    }
    files.set(file.digest, file)
    layers.push({ digest: file.digest, mediaType, size: file.sizeBytes })
  }
  // A docker save archive has no manifest blob: the config's digest (the image ID) names the image.
  return { manifest: { reference: what, digest: configFile.digest, defaults, diffIds, layers }, files }
}
