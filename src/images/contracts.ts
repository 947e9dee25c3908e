/**
 * The contracts between the parts that turn OCI images and Dockerfiles into templates:
 *
 *   reference / registry / archive  ->  ImageSource (a manifest's config and layer blobs, verified)
 *   layer store                     ->  unpacked layers keyed by digest, shared between templates
 *   dockerfile builder              ->  a chain of layers and an ImageDefaults, from instructions
 *   template store                  ->  a template version whose root is that chain
 *
 * Everything read from a registry, an archive or a build context is untrusted.
 */
import type { Readable } from 'node:stream'
import type { AgentNetwork, CallOptions, TemplateImageConfig } from '../shared/index.js'

/** A content digest, `sha256:<64 hex>` (the only algorithm accepted). */
export type Digest = `sha256:${string}`

/**
 * What an image's config says its containers get, as a template's defaults (`Env` parsed into a
 * record, `WorkingDir`, `User` — absent: root —, `Entrypoint`, `Cmd`, `ExposedPorts` as sorted
 * numbers, `Labels`). The wire type TemplateImageConfig, under the name the image code uses.
 */
export type ImageDefaults = TemplateImageConfig

/** One layer blob of an image, as its manifest lists it. */
export interface LayerDescriptor {
  digest: Digest
  /** Docker's or OCI's layer media type: tar, tar+gzip or tar+zstd. */
  mediaType: string
  /** Compressed size, as the manifest says (checked while reading). */
  size: number
}

/** An image resolved to one linux/amd64 manifest: its config and layers, bottom first. */
export interface ImageManifest {
  /** The reference as given (for records and messages). */
  reference: string
  /** The digest of the manifest the layers come from (for an index: the chosen platform's). */
  digest: Digest
  /** The image config's `config` part, parsed (OCI image config). */
  defaults: ImageDefaults
  /** `rootfs.diff_ids` of the config: the digests of the uncompressed layers, bottom first. */
  diffIds: Digest[]
  layers: LayerDescriptor[]
}

/** Where an image's blobs come from: a registry or an archive. */
export interface ImageSource {
  readonly manifest: ImageManifest
  /**
   * The layer blob's bytes, compressed as stored. The stream errors (and never ends cleanly) when
   * its bytes do not hash to `layer.digest` or exceed `layer.size`, so a consumer that only keeps
   * what it read once the stream ended cleanly never keeps a tampered layer.
   */
  openLayer(layer: LayerDescriptor, options?: CallOptions): Promise<Readable>
  /** Releases what the source holds (an unpacked archive's temp dir). Safe to call twice. */
  close(): Promise<void>
}

/** Credentials for a registry: `--registry-auth user:password`, or found in a Docker config.json. */
export interface RegistryCredentials {
  username: string
  password: string
}

/** Options of a pull. */
export interface PullOptions extends CallOptions {
  /** Credentials for the registry of the reference. @default those in the Docker config.json, else none */
  credentials?: RegistryCredentials
  /** The Docker config.json to read credentials from. @default $DOCKER_CONFIG/config.json, else ~/.docker/config.json */
  dockerConfigPath?: string
  /**
   * Registries the operator trusts (`host:port`): reached over plain HTTP, and allowed on this
   * host's own addresses or a metadata service, where any other registry is refused.
   */
  insecureRegistries?: string[]
  /** Progress lines ("pulling manifest", "resolved sha256:…"). */
  onProgress?: (line: string) => void
}

/** A layer in the layer store: an unpacked tree that overlayfs can stack. */
export interface StoredLayer {
  /** Its key: a compressed blob's digest, or a build step's cache key. */
  id: Digest
  /** The tree (overlayfs lower dir). */
  dir: string
  /** Bytes of the unpacked tree. */
  sizeBytes: number
}

/** Limits an unpack enforces on untrusted layers. */
export interface UnpackLimits {
  /** Most bytes one layer may unpack to (a layer bomb is refused past it). @default 16 GiB */
  maxLayerBytes?: number
  /** Most entries one layer may hold. @default 1,000,000 */
  maxEntries?: number
}

/** The content-addressed store of unpacked layers, shared by every template on this host. */
export interface ImageLayerStore {
  /** The store's directory (each layer a directory under it). */
  readonly dir: string
  /**
   * The layer `id`, unpacked from `open()` (a tar, tar+gzip or tar+zstd stream per `mediaType`)
   * when not stored yet. Concurrent calls for one id share one unpack. A failed or cancelled
   * unpack leaves nothing.
   */
  ensure(id: Digest, mediaType: string, open: () => Promise<Readable>, options?: CallOptions & UnpackLimits): Promise<StoredLayer>
  /**
   * A layer made by `fill` in a fresh empty directory (a Dockerfile's COPY, WORKDIR, a RUN's
   * commit), stored under `id` when `fill` resolves; nothing is kept when it throws. `fill` must
   * take at most `roomBytes` of the disk (the free space beyond the host's margin, measured
   * before it began), refusing with `resource_exhausted` before it would take more.
   */
  create(id: Digest, fill: (dir: string, roomBytes: number, roomFiles: number) => Promise<void>, options?: CallOptions): Promise<StoredLayer>
  /** The stored layer, or null. */
  get(id: Digest): Promise<StoredLayer | null>
  /** Removes every layer not in `keep`; returns the ids removed. */
  sweep(keep: ReadonlySet<string>): Promise<Digest[]>
}

/** A root made of layers: what FROM gives and each step extends. */
export interface LayerChain {
  /** Layer directories, topmost first (overlay `lowerdir` order). */
  lowerDirs: string[]
  /** The ids of the chain's layers that live in the image layer store (what a template stands on). */
  layerIds: Digest[]
  /** Host directories bind-mounted read-only (a FROM template's, e.g. `host`). */
  readonlyBinds: { source: string; target: string }[]
  /** Setuid files may raise privileges (a FROM template's `allowSetuid`). */
  allowSetuid?: boolean
}

/** What a RUN step runs, in a build sandbox over `chain` with a fresh writable layer. */
export interface BuildRunRequest {
  chain: LayerChain
  argv: string[]
  env: Record<string, string>
  cwd: string
  /** `USER` in effect (name, uid, name:group, uid:gid). */
  user: string
  /** The build sandbox's network: a veth under the server's default egress policy, or none (`RUN --network=none`). */
  network: AgentNetwork
}

/** A finished RUN step: its exit code and, when it succeeded, a way to keep its writable layer. */
export interface BuildRunResult {
  exitCode: number
  /** Stores what the step wrote as layer `id` of the image layer store (call once, only on success). */
  commit(id: Digest): Promise<StoredLayer>
  /** Removes the build sandbox and its writable layer. Safe to call twice; call it in every case. */
  dispose(): Promise<void>
}

/** What the Dockerfile builder needs from the host it builds on. */
export interface BuildHost {
  layers: ImageLayerStore
  /** The most one layer may hold: a pulled layer unpacked, what a COPY or ADD writes, a RUN step's disk. @default 16 GiB */
  maxLayerBytes?: number
  /** Pulls `reference` (or finds it pulled) and stores its layers: FROM an image. */
  pull(reference: string, options?: PullOptions): Promise<{ chain: LayerChain; defaults: ImageDefaults; digest: Digest }>
  /** FROM a template built on this host: its root and defaults; not_found names the templates there are. */
  template(name: string, options?: CallOptions): Promise<{ chain: LayerChain; defaults: ImageDefaults; version: number; builtAt: string }>
  /** Runs one RUN step; `onOutput` gets its stdout and stderr as they come. */
  run(req: BuildRunRequest, onOutput: (stream: 'stdout' | 'stderr', data: Uint8Array) => void, options?: CallOptions): Promise<BuildRunResult>
}

/** A Dockerfile build: the finished root and its defaults. */
export interface DockerfileBuildResult {
  chain: LayerChain
  defaults: ImageDefaults
  /** The FROM: an image reference (with its digest) or a template name. */
  from: { image: string; digest: Digest } | { template: string; version: number }
  steps: number
  cachedSteps: number
}
