/**
 * Templates from images, image archives and Dockerfiles; deleting a template. Archives and build
 * contexts are bytes here; `@sandstorm/sdk/node` also takes them as paths.
 */
import type { RegistryAuth, TemplateBuildEvent, TemplateInfo, TemplateStartInput } from './wire/index.js'
import { resolveConnection, type ConnectionOptions } from './connection.js'
import { errorFromWire } from './errors.js'
import { createApiClient, type ApiRequest } from './http-client.js'
import { parseNdjson } from './ndjson.js'

/** Where a template comes from: exactly one of `image`, `imageArchive`, `context` (a Dockerfile build). */
export interface BuildTemplateOptions extends ConnectionOptions {
  /** An image in a registry: `python:3.12-slim`, `registry.local:5000/team/app@sha256:…`. */
  image?: string
  /** Credentials for the image's registry. @default the server's Docker config.json, else none */
  registryAuth?: RegistryAuth
  /** A `docker save` tar or an OCI image layout tar (streamed as it is read). */
  imageArchive?: Blob | ReadableStream<Uint8Array>
  /** The build context of a Dockerfile build, as a tar (streamed as it is read). */
  context?: Blob | ReadableStream<Uint8Array>
  /** The Dockerfile's path inside `context`. @default 'Dockerfile' */
  dockerfile?: string
  buildArgs?: Record<string, string>
  /** Run every Dockerfile step again. @default false */
  noCache?: boolean
  /** @default 512 */
  memoryMiB?: number
  /** @default 1 */
  cpus?: number
  /** What every sandbox of the template runs at create (E2B's start command, with a ready check). */
  start?: TemplateStartInput
  /** Gets every event of the build (progress, steps, their output, the end). */
  onEvent?: (event: TemplateBuildEvent) => void
}

/** Builds a new version of template `name` from an image, an image archive or a Dockerfile. */
export async function buildTemplate(name: string, options: BuildTemplateOptions): Promise<{ template: TemplateInfo }> {
  const sources = [options.image, options.imageArchive, options.context].filter((s) => s !== undefined)
  if (sources.length !== 1) throw errorFromWire(400, 'invalid_argument', `buildTemplate: expected exactly one of image, imageArchive and context, got ${sources.length}`)
  const path = `/v1/templates/${encodeURIComponent(name)}/build`
  const settings = { ...(options.memoryMiB ? { memoryMiB: options.memoryMiB } : {}), ...(options.cpus ? { cpus: options.cpus } : {}) }
  let req: ApiRequest
  if (options.image !== undefined) {
    req = { method: 'POST', path, json: { image: options.image, ...(options.registryAuth ? { registryAuth: options.registryAuth } : {}), ...settings, ...(options.start ? { start: options.start } : {}) } }
  } else {
    const archive = options.imageArchive
    const body = archive ?? options.context!
    const query: Record<string, string> = {
      source: archive !== undefined ? 'archive' : 'dockerfile',
      ...(options.dockerfile ? { dockerfile: options.dockerfile } : {}),
      ...(options.buildArgs ? { buildArgs: JSON.stringify(options.buildArgs) } : {}),
      ...(options.noCache ? { noCache: 'true' } : {}),
      ...(options.memoryMiB ? { memoryMiB: String(options.memoryMiB) } : {}),
      ...(options.cpus ? { cpus: String(options.cpus) } : {}),
      ...(options.start ? { start: JSON.stringify(options.start) } : {}),
    }
    req = { method: 'POST', path, query, body, contentType: 'application/x-tar' }
  }
  const stream = await createApiClient(resolveConnection(options)).stream({ ...req, signal: options.signal })
  for await (const event of parseNdjson<TemplateBuildEvent>(stream)) {
    options.onEvent?.(event)
    if (event.type === 'done') return { template: event.template }
    if (event.type === 'error') throw Object.assign(errorFromWire(0, event.code, event.message), { step: event.step })
  }
  throw errorFromWire(0, 'internal', `the build of template "${name}" ended without saying whether it succeeded`)
}

/** Removes the image layers no template stands on: the Dockerfile build cache, and layers of deleted templates a build had kept. */
export function pruneTemplateLayers(options: ConnectionOptions = {}): Promise<{ removedLayers: number }> {
  return createApiClient(resolveConnection(options)).json({ method: 'POST', path: '/v1/templates/prune', signal: options.signal })
}

/** Deletes every version of template `name` and the layers no other template stands on. */
export function deleteTemplate(name: string, options: ConnectionOptions = {}): Promise<{ removedLayers: number }> {
  return createApiClient(resolveConnection(options)).json({ method: 'DELETE', path: `/v1/templates/${encodeURIComponent(name)}`, signal: options.signal })
}
