/**
 * The bodies and answers of the e2b SDK's template builder (`Template.build`, 2.51), as its
 * OpenAPI types name them: TemplateBuildRequestV3, TemplateBuildStartV2, TemplateBuildInfo.
 * Loose objects: the SDK sends fields Sandstorm has no use for (`minFreeDiskMb`, a step's `gzip`).
 */
import { z } from 'zod'
import { limits } from '../../shared/index.js'

/** `POST /v3/templates`: a build is requested for a name (`name[:tag]`). */
export const requestBuildBody = z.looseObject({
  name: z.string().min(1).max(256).optional(),
  /** Deprecated by E2B in favour of `name`; still sent by older SDKs. */
  alias: z.string().min(1).max(256).optional(),
  tags: z.array(z.string().max(128)).max(16).nullish(),
  cpuCount: z.number().int().min(1).max(limits.maxCpus).nullish(),
  memoryMB: z.number().int().min(limits.minMemoryMiB).max(limits.maxMemoryMiB).nullish(),
})

/** One instruction of a template: RUN, COPY, ENV, WORKDIR or USER, with its arguments as the SDK lays them out. */
export const templateStepSchema = z.looseObject({
  type: z.string().min(1).max(32),
  args: z.array(z.string().max(64 * 1024)).max(512).default([]),
  /** A COPY's files: the SHA-256 (hex) the SDK computed over the copied paths, their stats and bytes. */
  filesHash: z.string().regex(/^[a-f0-9]{64}$/, 'a SHA-256 in lowercase hex').optional(),
  force: z.boolean().optional(),
})

/** A registry's credentials for `fromImage(image, { username, password })`; E2B's AWS and GCP kinds are refused by name. */
const registryConfig = z.looseObject({
  type: z.string(),
  username: z.string().max(1024).optional(),
  password: z.string().max(64 * 1024).optional(),
})

/** `POST /v2/templates/:templateID/builds/:buildID`: what to build. */
export const startBuildBody = z.looseObject({
  fromImage: z.string().max(1024).nullish(),
  fromTemplate: z.string().max(256).nullish(),
  fromImageRegistry: registryConfig.nullish(),
  steps: z.array(templateStepSchema).max(256).default([]),
  startCmd: z.string().max(64 * 1024).nullish(),
  readyCmd: z.string().max(64 * 1024).nullish(),
  force: z.boolean().optional(),
})

/** A validated start body. */
export type StartBuildBody = z.output<typeof startBuildBody>
/** A validated step. */
export type TemplateStep = z.output<typeof templateStepSchema>

/** `GET .../status?logsOffset=n`: the log entries from the n-th on. */
export const buildStatusQuery = z.looseObject({
  logsOffset: z.coerce.number().int().min(0).optional(),
})

/** E2B's log levels. */
export type BuildLogLevel = 'debug' | 'info' | 'warn' | 'error'

/** E2B's BuildLogEntry. */
export interface BuildLogEntry {
  timestamp: string
  level: BuildLogLevel
  message: string
  /** The step it belongs to: `base`, a step's 1-based number as text, or `finalize`. */
  step?: string
}

/** E2B's TemplateBuildStatus ('waiting' until the SDK has sent what to build). */
export type BuildStatus = 'waiting' | 'building' | 'ready' | 'error'

/** E2B's BuildStatusReason: why a build failed, and at which step (the SDK points at that step's line of the user's code). */
export interface BuildStatusReason {
  message: string
  step?: string
  logEntries?: BuildLogEntry[]
}
