/**
 * Image templates on the agent: a template from an image in a registry, from an image archive,
 * or from a Dockerfile and its context, each a chain of layers in the shared layer store; and
 * deleting a template, which frees the layers that nothing else stands on.
 */
import { dirname } from 'node:path'
import type { BuildHost } from '../images/contracts.js'
import { defaultMaxArchiveBytes, openImageArchive } from '../images/archive/index.js'
import { buildDockerfile } from '../images/dockerfile/build-dockerfile.js'
import { SandstormError, type CallOptions, type Logger, type TemplateBuildEvent, type TemplateInfo, type TemplateSource } from '../shared/index.js'
import type { TemplateStore } from '../templates/index.js'
import type { ImageBuildRequest } from './image-api.js'
import { storeImage } from './build-host.js'
import { roomOrRefuse } from '../storage/index.js'
import type { AgentImageApi } from './image-api.js'

/** Options of createImageBuilds. */
export interface ImageBuildsOptions {
  templates: TemplateStore
  host: BuildHost
  logger: Logger
  /** The most one layer of an archive may unpack to. @default the unpacker's */
  maxLayerBytes?: number
  /** Why `name` cannot be deleted now (sandboxes or snapshots on it), or null. */
  inUse(name: string): Promise<string | null>
}

/** Builds and deletes image templates on this agent. */
export function createImageBuilds(options: ImageBuildsOptions): AgentImageApi {
  const { templates, host, logger } = options

  async function build(name: string, req: ImageBuildRequest, emit: (event: TemplateBuildEvent) => void, call: CallOptions = {}): Promise<TemplateInfo> {
    const startedMs = Date.now()
    const progress = (message: string): void => emit({ type: 'progress', message })
    const base = { signal: call.signal, onProgress: progress }
    let made: { chain: Parameters<TemplateStore['addImageVersion']>[1]['chain']; defaults: Parameters<TemplateStore['addImageVersion']>[1]['defaults']; source: TemplateSource; description: string }
    if (req.kind === 'image') {
      progress(`pulling ${req.image}`)
      const pulled = await host.pull(req.image, { ...base, ...(req.credentials ? { credentials: req.credentials } : {}) })
      made = { ...pulled, source: { kind: 'image', reference: req.image, digest: pulled.digest }, description: `image ${req.image}@${pulled.digest}` }
    } else if (req.kind === 'archive') {
      // Copied out beside the upload (the data dir, not /tmp), and never past the room left there.
      const tmpDir = dirname(req.path)
      const room = await roomOrRefuse(tmpDir, 'unpacking the image archive')
      const source = await openImageArchive(req.path, { signal: call.signal, tmpDir, maxUnpackedBytes: Math.min(defaultMaxArchiveBytes, room) })
      try {
        progress(`archive holds ${source.manifest.reference || 'an image'} (${source.manifest.layers.length} layers)`)
        const chain = await storeImage(templates, source, { ...base, ...(options.maxLayerBytes ? { maxLayerBytes: options.maxLayerBytes } : {}) })
        made = { chain, defaults: source.manifest.defaults, source: { kind: 'archive', reference: source.manifest.reference, digest: source.manifest.digest }, description: `image archive ${source.manifest.reference || ''}@${source.manifest.digest}` }
      } finally {
        await source.close()
      }
    } else {
      const result = await buildDockerfile({ dockerfile: req.dockerfile, contextDir: req.contextDir, buildArgs: req.buildArgs ?? {}, egress: req.egress, host, onEvent: emit, signal: call.signal, noCache: req.noCache ?? false })
      const from = 'image' in result.from ? { reference: result.from.image, digest: result.from.digest } : { template: result.from.template }
      made = { chain: result.chain, defaults: result.defaults, source: { kind: 'dockerfile', ...from }, description: `Dockerfile FROM ${'image' in result.from ? result.from.image : result.from.template} (${result.steps} steps, ${result.cachedSteps} cached)` }
    }
    call.signal?.throwIfAborted()
    const template = await templates.addImageVersion(name, {
      ...made,
      resources: { ...(req.memoryMiB ? { memoryMiB: req.memoryMiB } : {}), ...(req.cpus ? { cpus: req.cpus } : {}) },
      ...(req.start ? { start: req.start } : {}),
      buildMs: Date.now() - startedMs,
    })
    logger.info({ template: name, version: template.version, source: template.source, buildMs: template.buildMs }, 'image template built')
    return template
  }

  async function remove(name: string, keepDirs: Iterable<string>): Promise<{ removedLayers: number }> {
    const busy = await options.inUse(name)
    if (busy) throw new SandstormError('failed_precondition', `template "${name}" cannot be deleted: expected nothing to stand on it, but ${busy}`)
    return templates.remove(name, keepDirs)
  }

  return { build: (name, req, emit, call) => templates.whileBuilding(() => build(name, req, emit, call)), remove: (name, _call) => remove(name, []), prune: (_call) => templates.prune() }
}
