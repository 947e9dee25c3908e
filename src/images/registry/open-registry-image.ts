/** An image in a registry as an ImageSource: its linux/amd64 manifest, config and verified layers. */
import { Readable } from 'node:stream'
import { linkSignal, SandstormError, throwIfAborted, type CallOptions } from '../../shared/index.js'
import type { Digest, ImageManifest, ImageSource, LayerDescriptor, PullOptions } from '../contracts.js'
import { imageDefaultsOf } from '../image-config.js'
import { parseImageReference, type ImageReference } from '../reference.js'
import { credentialsFromDockerConfig } from './docker-config.js'
import { manifestAccept, parseManifestDocument, pickPlatform, type Descriptor } from './manifest.js'
import { readLimited } from './read-limited.js'
import { createRegistryClient, type RegistryClient } from './registry-client.js'
import { digestOf, verifyingStream } from './verifying-stream.js'

// Manifests and configs are small; anything far larger is hostile.
const maxManifestBytes = 4 * 1024 * 1024
const maxConfigBytes = 8 * 1024 * 1024

/**
 * Resolves `reference` in its registry to one linux/amd64 manifest and its config, checked against
 * their digests. Unknown tags and digests are `not_found`; refused credentials `unauthenticated`
 * or `permission_denied`; an unreachable registry `unavailable`.
 */
export async function openRegistryImage(reference: string, options: PullOptions = {}): Promise<ImageSource> {
  const ref = parseImageReference(reference)
  const signal = linkSignal(options)
  const progress = options.onProgress ?? (() => {})
  const credentials = options.credentials ?? (await credentialsFromDockerConfig(ref.registry, options.dockerConfigPath))
  const client = createRegistryClient(ref, { credentials, insecureRegistries: options.insecureRegistries })

  progress(`pulling manifest ${ref.canonical}`)
  let document = await fetchManifest(client, ref, ref.digest ?? ref.tag!, ref.digest, signal)
  if (document.doc.kind === 'index') {
    const chosen = pickPlatform(document.doc.manifests, ref.canonical)
    progress(`pulling manifest ${chosen.digest} (linux/amd64)`)
    document = await fetchManifest(client, ref, chosen.digest, chosen.digest, signal)
    if (document.doc.kind === 'index') throw new SandstormError('invalid_argument', `image ${ref.canonical}: expected the index's linux/amd64 entry to be a manifest, got another index`)
  }
  const { doc, digest } = document
  if (doc.kind !== 'manifest') throw new SandstormError('internal', 'unreachable: an index after resolving')

  const configBytes = await fetchBlob(client, ref, doc.config, maxConfigBytes, signal)
  let configJson: unknown
  try {
    configJson = JSON.parse(configBytes.toString('utf8'))
  } catch {
    throw new SandstormError('invalid_argument', `image ${ref.canonical}: expected a JSON image config in ${doc.config.digest}, got bytes that are not JSON`)
  }
  const { defaults, diffIds } = imageDefaultsOf(configJson)
  if (diffIds.length !== doc.layers.length) {
    throw new SandstormError('invalid_argument', `image ${ref.canonical}: expected as many diff_ids in its config as layers in its manifest (${doc.layers.length}), got ${diffIds.length}`)
  }
  const manifest: ImageManifest = { reference, digest, defaults, diffIds, layers: doc.layers }

  return {
    manifest,
    async openLayer(layer: LayerDescriptor, callOptions: CallOptions = {}): Promise<Readable> {
      const listed = manifest.layers.find((l) => l.digest === layer.digest)
      if (!listed) throw new SandstormError('invalid_argument', `image ${ref.canonical}: expected one of its layers, got ${layer.digest}`)
      const layerSignal = linkSignal(callOptions)
      const response = await getBlob(client, ref, listed.digest, layerSignal)
      const body = Readable.fromWeb(response.body! as import('node:stream/web').ReadableStream<Uint8Array>)
      const verifier = verifyingStream(listed.digest, listed.size)
      body.on('error', (err) => verifier.destroy(layerSignal?.aborted ? abortErrorOf(layerSignal) : SandstormError.from(err, 'unavailable')))
      verifier.on('close', () => body.destroy())
      return body.pipe(verifier)
    },
    async close() {},
  }
}

interface FetchedManifest {
  doc: ReturnType<typeof parseManifestDocument>
  digest: Digest
}

async function fetchManifest(client: RegistryClient, ref: ImageReference, tagOrDigest: string, expected: Digest | undefined, signal: AbortSignal | undefined): Promise<FetchedManifest> {
  const response = await client.get(`/v2/${ref.repository}/manifests/${tagOrDigest}`, { Accept: manifestAccept }, signal)
  if (response.status === 404) {
    await response.body?.cancel().catch(() => {})
    throw new SandstormError('not_found', `image ${ref.canonical}: registry ${ref.registry} has no manifest ${tagOrDigest} in ${ref.repository}`)
  }
  await expectOk(response, ref, `manifest ${tagOrDigest}`)
  const bytes = await readLimited(response, maxManifestBytes, `image ${ref.canonical}: manifest ${tagOrDigest}`)
  const digest = digestOf(bytes)
  if (expected !== undefined && digest !== expected) {
    throw new SandstormError('invalid_argument', `image ${ref.canonical}: expected manifest ${expected}, got bytes that hash to ${digest} (the registry served altered content)`)
  }
  return { doc: parseManifestDocument(bytes, response.headers.get('content-type') ?? undefined, ref.canonical), digest }
}

async function getBlob(client: RegistryClient, ref: ImageReference, digest: Digest, signal: AbortSignal | undefined): Promise<Response> {
  const response = await client.get(`/v2/${ref.repository}/blobs/${digest}`, {}, signal)
  if (response.status === 404) {
    await response.body?.cancel().catch(() => {})
    throw new SandstormError('not_found', `image ${ref.canonical}: registry ${ref.registry} has no blob ${digest} in ${ref.repository}`)
  }
  await expectOk(response, ref, `blob ${digest}`)
  if (!response.body) throw new SandstormError('unavailable', `image ${ref.canonical}: registry ${ref.registry} answered blob ${digest} without a body`)
  return response
}

async function fetchBlob(client: RegistryClient, ref: ImageReference, descriptor: Descriptor, maxBytes: number, signal: AbortSignal | undefined): Promise<Buffer> {
  if (descriptor.size > maxBytes) throw new SandstormError('invalid_argument', `image ${ref.canonical}: expected a config of at most ${maxBytes} bytes, got one of ${descriptor.size}`)
  const response = await getBlob(client, ref, descriptor.digest, signal)
  const bytes = await readLimited(response, maxBytes, `image ${ref.canonical}: blob ${descriptor.digest}`)
  const digest = digestOf(bytes)
  if (digest !== descriptor.digest || bytes.length !== descriptor.size) {
    throw new SandstormError('invalid_argument', `image ${ref.canonical}: expected blob ${descriptor.digest} of ${descriptor.size} bytes, got ${bytes.length} bytes that hash to ${digest}`)
  }
  return bytes
}

async function expectOk(response: Response, ref: ImageReference, what: string): Promise<void> {
  if (response.ok) return
  await response.body?.cancel().catch(() => {})
  throw new SandstormError('unavailable', `image ${ref.canonical}: registry ${ref.registry} answered ${response.status} for ${what}`)
}

function abortErrorOf(signal: AbortSignal): SandstormError {
  try {
    throwIfAborted(signal)
  } catch (err) {
    return err as SandstormError
  }
  return new SandstormError('canceled', 'the operation was canceled')
}
