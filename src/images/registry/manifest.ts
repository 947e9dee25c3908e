/** OCI and Docker manifests and indexes (untrusted JSON), and the choice of linux/amd64 in an index. */
import { z } from 'zod'
import { SandstormError } from '../../shared/index.js'
import type { Digest, LayerDescriptor } from '../contracts.js'

/** The manifest media types a pull asks for and reads. */
export const manifestMediaTypes = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
} as const

/** The `Accept` header of a manifest request: every manifest and index type read here. */
export const manifestAccept = Object.values(manifestMediaTypes).join(', ')

/** Layer media types an unpack can read: Docker's and OCI's tar, tar+gzip and tar+zstd. */
export const layerMediaTypes: ReadonlySet<string> = new Set([
  'application/vnd.docker.image.rootfs.diff.tar',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.diff.tar.zstd',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
])

/** The platform a template runs on. */
export const wantedPlatform = { os: 'linux', architecture: 'amd64' } as const

const digestSchema = z.string().regex(/^sha256:[a-f0-9]{64}$/, 'a sha256:<64 hex> digest')
const descriptorSchema = z.object({
  mediaType: z.string().optional(),
  digest: digestSchema,
  size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  platform: z.object({ os: z.string(), architecture: z.string(), variant: z.string().optional() }).optional(),
})
const documentSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  config: descriptorSchema.optional(),
  layers: z.array(descriptorSchema).optional(),
  manifests: z.array(descriptorSchema).optional(),
})

/** A content descriptor: what a manifest or index points at. */
export type Descriptor = z.infer<typeof descriptorSchema> & { digest: Digest }

/** A manifest or an index, parsed. */
export type ManifestDocument =
  | { kind: 'manifest'; mediaType: string; config: Descriptor; layers: LayerDescriptor[] }
  | { kind: 'index'; mediaType: string; manifests: Descriptor[] }

/**
 * Parses a manifest or index. `contentType` (a registry's header) is used when the document names
 * no media type; `what` names the image in messages.
 */
export function parseManifestDocument(bytes: Uint8Array, contentType: string | undefined, what: string): ManifestDocument {
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'))
  } catch {
    throw new SandstormError('invalid_argument', `image ${what}: expected a JSON manifest, got ${bytes.length} bytes that are not JSON`)
  }
  const version = (json as { schemaVersion?: unknown } | null)?.schemaVersion
  if (version === 1) throw new SandstormError('invalid_argument', `image ${what}: expected a schema 2 or OCI manifest, got a Docker schema 1 manifest (push the image again with a current client)`)
  const parsed = documentSchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new SandstormError('invalid_argument', `image ${what}: expected an OCI or Docker manifest, got ${issue?.path.join('.') || 'the document'}: ${issue?.message}`)
  }
  const doc = parsed.data
  const mediaType = doc.mediaType ?? contentType?.split(';')[0]?.trim() ?? ''
  const isIndex = mediaType === manifestMediaTypes.dockerList || mediaType === manifestMediaTypes.ociIndex || (!doc.layers && doc.manifests !== undefined)
  if (isIndex) {
    if (!doc.manifests) throw new SandstormError('invalid_argument', `image ${what}: expected an index's manifests, got none`)
    return { kind: 'index', mediaType, manifests: doc.manifests as Descriptor[] }
  }
  if (!doc.config || !doc.layers) throw new SandstormError('invalid_argument', `image ${what}: expected a manifest with config and layers, got ${doc.config ? 'no layers' : 'no config'}`)
  const layers = doc.layers.map((layer): LayerDescriptor => {
    const type = layer.mediaType ?? ''
    if (!layerMediaTypes.has(type)) {
      throw new SandstormError('invalid_argument', `image ${what}: layer ${layer.digest} has media type ${JSON.stringify(type)}; expected a Docker or OCI tar, tar+gzip or tar+zstd layer`)
    }
    return { digest: layer.digest as Digest, mediaType: type, size: layer.size }
  })
  return { kind: 'manifest', mediaType, config: doc.config as Descriptor, layers }
}

/** The linux/amd64 manifest of an index; `not_found` naming the platforms there are otherwise. */
export function pickPlatform(manifests: Descriptor[], what: string): Descriptor {
  const matching = manifests.filter((m) => m.platform?.os === wantedPlatform.os && m.platform.architecture === wantedPlatform.architecture)
  // Attestation manifests (buildx) say unknown/unknown; a single manifest without a platform is the image.
  const chosen = matching[0] ?? (manifests.length === 1 && !manifests[0]?.platform ? manifests[0] : undefined)
  if (chosen) return chosen
  const platforms = manifests.map((m) => (m.platform ? [m.platform.os, m.platform.architecture, m.platform.variant].filter(Boolean).join('/') : 'unnamed'))
  throw new SandstormError('not_found', `image ${what}: expected a ${wantedPlatform.os}/${wantedPlatform.architecture} manifest, got only ${platforms.join(', ') || 'an empty index'}`)
}
