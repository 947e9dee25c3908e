/** An OCI image config (untrusted JSON) read into a template's defaults and its layers' diffIDs. */
import { z } from 'zod'
import { SandstormError } from '../shared/index.js'
import type { Digest, ImageDefaults } from './contracts.js'

const digestSchema = z.string().regex(/^sha256:[a-f0-9]{64}$/, 'a sha256:<64 hex> digest')
const stringList = z.array(z.string()).nullish()

const imageConfigSchema = z.object({
  architecture: z.string().optional(),
  os: z.string().optional(),
  variant: z.string().optional(),
  config: z
    .object({
      Env: stringList,
      WorkingDir: z.string().nullish(),
      User: z.string().nullish(),
      Entrypoint: stringList,
      Cmd: stringList,
      ExposedPorts: z.record(z.string(), z.unknown()).nullish(),
      Labels: z.record(z.string(), z.string()).nullish(),
    })
    .nullish(),
  rootfs: z.object({
    type: z.literal('layers'),
    diff_ids: z.array(digestSchema),
  }),
})

/** What an image config gives: the defaults, the diffIDs of its layers and its platform. */
export interface ImageConfigSummary {
  defaults: ImageDefaults
  /** `rootfs.diff_ids`: the uncompressed layers' digests, bottom first. */
  diffIds: Digest[]
  /** `os/architecture[/variant]`, as the config says (empty parts when absent). */
  platform: string
}

/** Reads an OCI image config; anything that is not one is `invalid_argument`, saying what. */
export function imageDefaultsOf(config: unknown): ImageConfigSummary {
  const parsed = imageConfigSchema.safeParse(config)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new SandstormError('invalid_argument', `image config: expected an OCI image config, got ${issue?.path.join('.') || 'the document'}: ${issue?.message}`)
  }
  const { config: c, rootfs, os = '', architecture = '', variant } = parsed.data
  const env: Record<string, string> = {}
  for (const entry of c?.Env ?? []) {
    const eq = entry.indexOf('=')
    // An entry without '=' sets the name to empty, as Docker does for `ENV NAME` from older builders.
    const name = eq === -1 ? entry : entry.slice(0, eq)
    if (name === '') throw new SandstormError('invalid_argument', `image config: expected Env entries NAME=value, got ${JSON.stringify(entry)}`)
    env[name] = eq === -1 ? '' : entry.slice(eq + 1)
  }
  const ports = new Set<number>()
  for (const key of Object.keys(c?.ExposedPorts ?? {})) {
    const match = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/i.exec(key)
    const port = match ? Number(match[1]) : NaN
    if (!(port >= 1 && port <= 65535)) throw new SandstormError('invalid_argument', `image config: expected ExposedPorts keys port[/tcp|udp], got ${JSON.stringify(key)}`)
    ports.add(port)
  }
  const defaults: ImageDefaults = {
    env,
    exposedPorts: [...ports].sort((a, b) => a - b),
    labels: { ...(c?.Labels ?? {}) },
  }
  if (c?.WorkingDir) defaults.workingDir = c.WorkingDir
  if (c?.User) defaults.user = c.User
  if (c?.Entrypoint) defaults.entrypoint = [...c.Entrypoint]
  if (c?.Cmd) defaults.cmd = [...c.Cmd]
  return { defaults, diffIds: rootfs.diff_ids as Digest[], platform: [os, architecture, ...(variant ? [variant] : [])].join('/') }
}
