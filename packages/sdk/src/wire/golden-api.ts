/** The golden template routes of the HTTP API: promote, rollback and build, and the build's events. */
import { z } from 'zod'
import { limits } from './api-limits.js'
import { runtimeSchema } from './api.js'
import type { TemplateInfo } from './api.js'
import { templateStartSchema } from './template-start.js'

/** A template name, as in a create. */
export const templateNameSchema = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'a template name such as "debian"')

/** POST /v1/templates/:name/promote */
export const promoteBody = z.strictObject({
  snapshotId: z.string().regex(/^[a-z]{2,4}-[a-z0-9]{16}$/, 'a snapshot id such as "snap-k3j9x0q2m1c8v7d4"'),
  /** What every sandbox of the new version runs at create. @default the snapshot's template's */
  start: templateStartSchema.optional(),
})

/** POST /v1/templates/:name/build */
export const buildTemplateBody = z.strictObject({
  /** The template the temporary sandbox starts from. */
  from: templateNameSchema,
  /** Shell commands, each run as root with /bin/sh -c, in order. */
  steps: z.array(z.string().min(1).max(64 * 1024)).min(1).max(256),
  /** Config of the temporary sandbox, recorded in the template. @default the `from` template's */
  memoryMiB: z.number().int().min(limits.minMemoryMiB).max(limits.maxMemoryMiB).optional(),
  cpus: z.number().positive().max(limits.maxCpus).optional(),
  /** The runtime the temporary sandbox runs on; with 'qemu' the template is its saved machine. @default the server's */
  runtime: runtimeSchema.optional(),
  /** What every sandbox of the template runs at create (not the build sandbox). @default the `from` template's */
  start: templateStartSchema.optional(),
})
export type BuildTemplateRequest = z.input<typeof buildTemplateBody>

/** The step of a build that failed, with what it printed (the last 64 KiB of stdout and stderr). */
export interface FailedBuildStep {
  /** 0-based. */
  index: number
  cmd: string
  exitCode: number
  output: string
}

/** One line of a build's NDJSON stream. */
export type TemplateBuildEvent =
  /** A step starts; `cached` when its layer came from the build cache (it runs nothing). */
  | { type: 'step'; index: number; cmd: string; cached?: boolean }
  /** A line of progress that is no step's output (a pull's manifest and layers, say). */
  | { type: 'progress'; message: string }
  /** `data` is base64, as in an exec's stream. */
  | { type: 'stdout' | 'stderr'; index: number; data: string }
  | { type: 'step_end'; index: number; exitCode: number }
  /** The build ended; `snapshotId` only for a build from steps (the snapshot its version stands on). */
  | { type: 'done'; template: TemplateInfo; snapshotId?: string }
  | { type: 'error'; code: string; message: string; step?: FailedBuildStep }
