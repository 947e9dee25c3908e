/**
 * What a Dockerfile build and an image pull need of this host: the image layer store, pulls into
 * it, the templates built here, and RUN steps in build sandboxes (real runc sandboxes over the
 * chain of layers so far, whose writable layer becomes the step's layer).
 */
import type { AgentSandbox } from './agent-api.js'
import type { AgentApi, AgentCreateRequest } from './agent-api.js'
import type { AgentSnapshotApi } from './snapshot-api.js'
import type { SandboxLayers } from './sandbox-layers.js'
import { copyStepLayer } from './step-layer.js'
import type { BuildHost, BuildRunRequest, BuildRunResult, Digest, ImageDefaults, ImageSource, LayerChain, PullOptions, StoredLayer, UnpackLimits } from '../images/contracts.js'
import { defaultMaxLayerBytes } from '../images/layers/index.js'
import { openRegistryImage } from '../images/registry/index.js'
import { formatBytes, newId, SandstormError, type CallOptions } from '../shared/index.js'
import type { ResolvedTemplate, TemplateStore } from '../templates/index.js'

/** Options of createBuildHost. */
export interface BuildHostOptions {
  templates: TemplateStore
  agent: AgentApi
  /** Starts a sandbox over a root that is no template (the agent's own create, past the template lookup). */
  createOver(req: AgentCreateRequest, template: ResolvedTemplate, options?: CallOptions): Promise<AgentSandbox>
  snapshots: AgentSnapshotApi
  layers: SandboxLayers
  /** Registries pulled from over plain HTTP. */
  insecureRegistries: string[]
  /** The most one layer may unpack to. @default the unpacker's (16 GiB) */
  maxLayerBytes?: number
}

/** Memory and CPUs of a RUN step's sandbox. */
const buildSandbox = { memoryMiB: 2048, cpus: 2, pidsMax: 4096 }

/** No defaults: what an image config without any gives. */
export const emptyDefaults = (): ImageDefaults => ({ env: {}, exposedPorts: [], labels: {} })

/**
 * The most layers an image may have: about what overlayfs stacks under one mount (Docker's own
 * limit is 125 to 128), and each is a tree on the disk and a lower dir of every sandbox on it.
 */
export const maxImageLayers = 127

/** Stores every layer of `source` (each once, shared with other templates) and returns the chain. */
export async function storeImage(templates: TemplateStore, source: ImageSource, options: CallOptions & UnpackLimits & { onProgress?: (line: string) => void } = {}): Promise<LayerChain> {
  const { layers } = source.manifest
  if (layers.length > maxImageLayers) {
    throw new SandstormError('invalid_argument', `image ${source.manifest.digest}: expected at most ${maxImageLayers} layers, got ${layers.length} (squash some of its layers and try again)`)
  }
  const stored: StoredLayer[] = []
  for (const [i, layer] of layers.entries()) {
    const had = await templates.imageLayers.get(layer.digest)
    options.onProgress?.(`layer ${i + 1}/${layers.length} ${layer.digest.slice(0, 19)} ${formatBytes(layer.size)}${had ? ' (already here)' : ''}`)
    const limits = { ...(options.signal ? { signal: options.signal } : {}), ...(options.maxLayerBytes ? { maxLayerBytes: options.maxLayerBytes } : {}) }
    stored.push(had ?? (await templates.imageLayers.ensure(layer.digest, layer.mediaType, () => source.openLayer(layer, options), limits)))
  }
  return chainOf(stored)
}

/** A chain of stored layers, bottom first as given, topmost first as overlay wants. */
export function chainOf(layers: StoredLayer[]): LayerChain {
  return { lowerDirs: layers.map((l) => l.dir).reverse(), layerIds: layers.map((l) => l.id), readonlyBinds: [] }
}

/** The BuildHost of this agent. */
export function createBuildHost(options: BuildHostOptions): BuildHost {
  const { templates, agent } = options
  // A step writes into a quota disk as large as one layer may be, so that it fills that disk and
  // not the host's. Made on the spot: the spares keep the size the sandboxes ask for.
  const stepDiskMiB = Math.ceil((options.maxLayerBytes ?? defaultMaxLayerBytes) / 1024 ** 2)

  async function pull(reference: string, pullOptions: PullOptions = {}) {
    const source = await openRegistryImage(reference, { ...pullOptions, insecureRegistries: [...options.insecureRegistries, ...(pullOptions.insecureRegistries ?? [])] })
    try {
      const chain = await storeImage(templates, source, { ...pullOptions, ...(options.maxLayerBytes ? { maxLayerBytes: options.maxLayerBytes } : {}) })
      return { chain, defaults: source.manifest.defaults, digest: source.manifest.digest }
    } finally {
      await source.close()
    }
  }

  async function template(name: string) {
    templates.holdForBuild(name)
    const resolved = await templates.resolve(name)
    const { rootfs, info } = resolved
    const chain: LayerChain = {
      lowerDirs: [...rootfs.lowerDirs],
      layerIds: (resolved.layerIds ?? []) as Digest[],
      readonlyBinds: rootfs.readonlyBinds.map((b) => ({ ...b })),
      ...(rootfs.allowSetuid ? { allowSetuid: true } : {}),
    }
    return { chain, defaults: info.config ?? emptyDefaults(), version: info.version, builtAt: info.builtAt }
  }

  async function run(req: BuildRunRequest, onOutput: (stream: 'stdout' | 'stderr', data: Uint8Array) => void, call: CallOptions = {}): Promise<BuildRunResult> {
    const id = newId('bld')
    const resolved: ResolvedTemplate = {
      info: { name: 'build', version: 1, description: 'a Dockerfile build step', sizeBytes: 0, buildMs: 0, builtAt: new Date().toISOString(), defaults: { memoryMiB: buildSandbox.memoryMiB, cpus: buildSandbox.cpus } },
      rootfs: { lowerDirs: req.chain.lowerDirs, readonlyBinds: req.chain.readonlyBinds, ...(req.chain.allowSetuid ? { allowSetuid: true } : {}) },
    }
    let created = false
    let disposed = false
    const dispose = async (): Promise<void> => {
      if (disposed || !created) return
      disposed = true
      await agent.destroy(id)
    }
    try {
      await options.createOver(
        {
          id,
          template: 'build',
          ...buildSandbox,
          diskMiB: stepDiskMiB,
          spareDisk: false,
          env: {},
          network: req.network,
          runtime: 'runc',
        },
        resolved,
        call,
      )
      created = true
      const { pid } = await agent.exec(id, { argv: req.argv, env: req.env, cwd: req.cwd, user: req.user }, call)
      let exitCode: number | undefined
      for await (const event of agent.follow(id, pid, call)) {
        if (event.type === 'stdout' || event.type === 'stderr') onOutput(event.type, Buffer.from(event.data, 'base64'))
        else if (event.type === 'end') exitCode = event.result.exitCode
      }
      call.signal?.throwIfAborted()
      if (exitCode === undefined) throw new SandstormError('internal', `build step ${JSON.stringify(req.argv)}: its output ended without an exit code`)
      let committed = false
      return {
        exitCode,
        async commit(layerId: Digest): Promise<StoredLayer> {
          if (committed) throw new SandstormError('internal', 'a build step is committed once')
          committed = true
          // The step's writable layer, captured as a snapshot (whiteouts and all), copied into the
          // shared store under the step's cache key; the snapshot goes once copied.
          const snapshot = await options.snapshots.take(id, { label: 'build step' }, call)
          try {
            const { layerDirs } = await options.layers.stackOf(snapshot.id)
            const top = layerDirs[0]
            if (!top) throw new SandstormError('internal', `snapshot ${snapshot.id} of a build step has no layer`)
            return await templates.imageLayers.create(layerId, (dir, roomBytes) => copyStepLayer(top, dir, roomBytes), call)
          } finally {
            await options.snapshots.remove(snapshot.id).catch(() => undefined)
          }
        },
        dispose,
      }
    } catch (err) {
      await dispose().catch(() => undefined)
      throw err
    }
  }

  return { layers: templates.imageLayers, pull, template, run, ...(options.maxLayerBytes ? { maxLayerBytes: options.maxLayerBytes } : {}) }
}
