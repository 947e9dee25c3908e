/** The image template routes of the HTTP API: a build from an image, an archive or a Dockerfile. */
import { z } from 'zod'
import { limits } from './api-limits.js'
import { templateStartSchema } from './template-start.js'

/** Credentials for a registry (`--registry-auth user:password`). */
export const registryAuthSchema = z.strictObject({
  username: z.string().min(1).max(1024),
  password: z.string().max(64 * 1024),
})
/** Credentials for a registry. */
export type RegistryAuth = z.infer<typeof registryAuthSchema>

const resources = {
  /** Memory of its sandboxes. @default 512 */
  memoryMiB: z.number().int().min(limits.minMemoryMiB).max(limits.maxMemoryMiB).optional(),
  /** CPUs of its sandboxes. @default 1 */
  cpus: z.number().positive().max(limits.maxCpus).optional(),
  /** What every sandbox of the template runs at create. */
  start: templateStartSchema.optional(),
}

/** POST /v1/templates/:name/build with a JSON body naming an image in a registry. */
export const imageBuildBody = z.strictObject({
  /** `name[:tag][@sha256:digest]`, e.g. `python:3.12-slim` or `registry.local:5000/team/app@sha256:…`. */
  image: z.string().min(1).max(1024),
  /** @default the credentials in the server's Docker config.json for that registry, else none */
  registryAuth: registryAuthSchema.optional(),
  ...resources,
})
/** A build from a registry image. */
export type ImageBuildBody = z.input<typeof imageBuildBody>

/** Query of POST /v1/templates/:name/build with a tar body (`Content-Type: application/x-tar`). */
export const uploadBuildQuery = z.strictObject({
  /** `archive`: the body is `docker save` output or an OCI image layout tar; `dockerfile`: it is the build context. */
  source: z.enum(['archive', 'dockerfile']),
  /** The Dockerfile's path inside the context. @default 'Dockerfile' */
  dockerfile: z.string().min(1).max(4096).optional(),
  /** Build args as a JSON object of strings, e.g. `{"VERSION":"1.2"}`. */
  buildArgs: z.string().max(64 * 1024).optional(),
  /** `true` runs every step again. */
  noCache: z.enum(['true', 'false']).optional(),
  memoryMiB: z.coerce.number().int().min(limits.minMemoryMiB).max(limits.maxMemoryMiB).optional(),
  cpus: z.coerce.number().positive().max(limits.maxCpus).optional(),
  /** A start command, as JSON (the body's `start` of other builds). */
  start: z.string().max(128 * 1024).optional(),
})

/** Build args as the query carries them: a JSON object of strings. */
export const buildArgsSchema = z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a build arg name'), z.string().max(64 * 1024))
