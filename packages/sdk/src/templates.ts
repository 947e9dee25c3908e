/** Templates as the server lists them, and golden templates: promote, rollback, build. */
import type { BuildTemplateRequest, FailedBuildStep, RuntimeName, TemplateBuildEvent, TemplateInfo, TemplateStartInput } from './wire/index.js'
import { resolveConnection, type ConnectionOptions } from './connection.js'
import { errorFromWire } from './errors.js'
import { createApiClient } from './http-client.js'
import { parseNdjson } from './ndjson.js'

/** Templates the server can create sandboxes from. */
export function listTemplates(options: ConnectionOptions = {}): Promise<TemplateInfo[]> {
  return createApiClient(resolveConnection(options)).json<TemplateInfo[]>({ method: 'GET', path: '/v1/templates', signal: options.signal })
}

/**
 * Makes a snapshot the current version of template `name` (a new version; the old ones are kept).
 * `start`: what its sandboxes run at create (default: the snapshot's template's start command).
 */
export function promoteTemplate(name: string, snapshotId: string, options: ConnectionOptions & { start?: TemplateStartInput } = {}): Promise<TemplateInfo> {
  return createApiClient(resolveConnection(options)).json<TemplateInfo>({
    method: 'POST',
    path: `/v1/templates/${encodeURIComponent(name)}/promote`,
    json: { snapshotId, ...(options.start ? { start: options.start } : {}) },
    signal: options.signal,
  })
}

/** Makes the version before the current one of template `name` current. */
export function rollbackTemplate(name: string, options: ConnectionOptions = {}): Promise<TemplateInfo> {
  return createApiClient(resolveConnection(options)).json<TemplateInfo>({ method: 'POST', path: `/v1/templates/${encodeURIComponent(name)}/rollback`, signal: options.signal })
}

/** Options of buildGoldenTemplate. */
export interface BuildGoldenTemplateOptions extends ConnectionOptions {
  /** Gets every event of the build as it comes (steps, their output, the end). */
  onEvent?: (event: TemplateBuildEvent) => void
}

/** What a golden build asks for: with `runtime: 'qemu'` it runs in a VM and the template is its saved machine. */
export type GoldenBuildRequest = BuildTemplateRequest & { runtime?: RuntimeName }

/**
 * Builds a new version of template `name`: runs `req.steps` in a temporary sandbox of `req.from`,
 * snapshots and promotes it. Rejects with the server's error (its `step` says which failed).
 */
export async function buildGoldenTemplate(name: string, req: GoldenBuildRequest, options: BuildGoldenTemplateOptions = {}): Promise<{ template: TemplateInfo; snapshotId: string }> {
  const stream = await createApiClient(resolveConnection(options)).stream({
    method: 'POST',
    path: `/v1/templates/${encodeURIComponent(name)}/build`,
    json: req,
    signal: options.signal,
  })
  for await (const event of parseNdjson<TemplateBuildEvent>(stream)) {
    options.onEvent?.(event)
    if (event.type === 'done') return { template: event.template, snapshotId: event.snapshotId ?? '' }
    if (event.type === 'error') throw Object.assign(errorFromWire(0, event.code, event.message), { step: event.step })
  }
  throw errorFromWire(0, 'internal', `the build of template "${name}" ended without saying whether it succeeded`)
}

/** The step that failed, on an error from buildGoldenTemplate. */
export function failedStepOf(err: unknown): FailedBuildStep | undefined {
  return (err as { step?: FailedBuildStep } | null)?.step
}
