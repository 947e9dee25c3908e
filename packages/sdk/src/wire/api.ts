/**
 * The HTTP API under /v1: request schemas (validated once, at the server's edge) and the shapes of
 * responses. The SDK builds its requests from the same types.
 */
import { z } from 'zod'
import { networkBody, type SandboxNetwork } from './network.js'
import type { TemplateStart } from './template-start.js'
import { terminalSize } from './terminal.js'
import { limits, runtimeNames } from './api-limits.js'

/** A string a process can be given (argv, env): a NUL would cut it short. */
const noNul = (what: string) => z.string().refine((v) => !v.includes('\0'), `${what} without NUL bytes`)

const labelKey = z.string().regex(/^[A-Za-z0-9_.\-/]{1,63}$/, 'a label key of letters, digits, _ . - / (1-63 chars)')
const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name')

/** An absolute path inside a sandbox. */
export const sandboxPath = z
  .string()
  .min(1, 'a path')
  .max(4096)
  .refine((p) => p.startsWith('/'), 'an absolute path (starting with /)')
  .refine((p) => !p.includes('\0'), 'a path without NUL bytes')

/** A runtime as a request names it. */
export const runtimeSchema = z.enum(runtimeNames)

/** POST /v1/sandboxes */
export const createSandboxBody = z.strictObject({
  template: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'a template name such as "debian"').default('debian'),
  memoryMiB: z.number().int().min(limits.minMemoryMiB).max(limits.maxMemoryMiB).optional(),
  cpus: z.number().positive().max(limits.maxCpus).optional(),
  pidsMax: z.number().int().min(16).max(limits.maxPids).optional(),
  /** The most the sandbox may write to its root filesystem; past it, writes fail with ENOSPC. @default the template's, else the server's */
  diskMiB: z.number().int().min(limits.minDiskMiB).max(limits.maxDiskMiB).optional(),
  timeoutMs: z.number().int().positive().max(limits.maxTimeoutMs).optional(),
  labels: z.record(labelKey, noNul('a label value').pipe(z.string().max(256))).optional(),
  env: z.record(envName, noNul('a value')).optional(),
  /** 'none' (only lo), or the egress policy and ingress settings. @default the server's default egress */
  network: networkBody.optional(),
  /** @default the server's default runtime, else the agent's ('runc'); a golden machine template implies its own */
  runtime: runtimeSchema.optional(),
})
export type CreateSandboxRequest = z.input<typeof createSandboxBody>

/** POST /v1/sandboxes/:id/timeout */
export const setTimeoutBody = z.strictObject({
  timeoutMs: z.number().int().positive().max(limits.maxTimeoutMs),
})

/** POST /v1/sandboxes/:id/exec */
export const execBody = z
  .strictObject({
    /** A shell string, run with /bin/sh -c. */
    cmd: noNul('a shell string').pipe(z.string().min(1)).optional(),
    /** An argv, run as it is. */
    argv: z.array(noNul('an argument')).min(1).optional(),
    env: z.record(envName, noNul('a value')).optional(),
    cwd: sandboxPath.optional(),
    /** User to run as: a name from the sandbox's /etc/passwd or a uid. @default 'root' */
    user: z.string().regex(/^[a-z_][a-z0-9_-]*$|^[0-9]+$/, 'a user name or uid').optional(),
    /** Bytes given on stdin (base64); stdin is then closed unless `keepStdin` is set. */
    stdinBase64: z.string().optional(),
    /** Keep stdin open for POST .../processes/:pid/stdin. */
    keepStdin: z.boolean().optional(),
    /** Kills the command's whole process tree after this long. */
    timeoutMs: z.number().int().positive().max(limits.maxTimeoutMs).optional(),
    /** Return as soon as it starts; the process is then listed and can be followed or killed. */
    background: z.boolean().optional(),
    /** Run it on a new terminal of this size (its output then comes as stdout; stdin stays open for input). */
    pty: terminalSize.optional(),
  })
  .refine((b) => (b.cmd === undefined) !== (b.argv === undefined), 'exactly one of "cmd" (a shell string) or "argv" (an array)')
export type ExecRequest = z.input<typeof execBody>

/** Signals a process can be sent. */
export const processSignals = ['SIGKILL', 'SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const
/** One of processSignals. */
export type ProcessSignal = (typeof processSignals)[number]

/** POST /v1/sandboxes/:id/processes/:pid/signal */
export const signalBody = z.strictObject({
  signal: z.enum(processSignals).default('SIGKILL'),
})

/** POST /v1/sandboxes/:id/processes/:pid/stdin */
export const stdinBody = z.strictObject({
  dataBase64: z.string().optional(),
  close: z.boolean().optional(),
})

/** Query of the file routes. */
export const pathQuery = z.strictObject({ path: sandboxPath })

/** POST /v1/sandboxes/:id/fs/mkdir */
export const mkdirBody = z.strictObject({ path: sandboxPath, parents: z.boolean().default(true) })
/** POST /v1/sandboxes/:id/fs/remove */
export const removeBody = z.strictObject({ path: sandboxPath, recursive: z.boolean().default(false) })
/** POST /v1/sandboxes/:id/fs/rename */
export const renameBody = z.strictObject({ from: sandboxPath, to: sandboxPath })

/** State of a sandbox as the catalog knows it. */
export type SandboxState = 'starting' | 'running' | 'paused' | 'stopped' | 'lost'

/** A sandbox as the API returns it. */
export interface SandboxInfo {
  id: string
  template: string
  state: SandboxState
  runtime: string
  memoryMiB: number
  cpus: number
  pidsMax: number
  /** Its disk quota: the most it may write to its root filesystem. */
  diskMiB: number
  labels: Record<string, string>
  /** 'none' (only lo), or its egress policy and ingress settings. */
  network: SandboxNetwork
  createdAt: string
  /** When the sandbox will be destroyed unless its timeout is extended. */
  expiresAt: string
}

/** How a sandbox's ports are reached, as create and get answer: `<port>-<id>.<domain>`, and a private sandbox's traffic token. */
export interface SandboxIngress {
  domain: string
  /** Set when it was created with `allowPublicTraffic: false`: the `e2b-traffic-access-token` its ports ask for. */
  trafficAccessToken?: string
}

/** The golden template version (and its snapshot) a sandbox stands on. */
export interface GoldenOrigin {
  version: number
  snapshotId: string
}

/** Where a created sandbox came from: a golden template's saved state, a cold start, or a warm pool. */
export type SandboxStartSource = 'golden' | 'cold' | 'pool'

/** How a created sandbox started, as POST /v1/sandboxes answers beside its info. */
export interface SandboxStart {
  /** 'golden' from a golden template's saved state, 'cold' booted, 'pool' from a warm pool; unset for a plain template. */
  source?: SandboxStartSource
  /** With 'cold' when the golden state could not be used (another memory or cpus on qemu): why. */
  sourceReason?: string
  /** The golden template version it stands on, whether it came from the pool or not. */
  golden?: GoldenOrigin
}

/** One event of an exec stream (NDJSON, one object per line). Output bytes are base64. */
export type ExecEvent =
  | { type: 'start'; pid: number }
  | { type: 'stdout'; data: string }
  | { type: 'stderr'; data: string }
  | { type: 'end'; result: ProcessResult }

/** How a process ended. */
export interface ProcessResult {
  /** Exit status; for a process ended by a signal, 128 + the signal's number, as a shell reports it. */
  exitCode: number
  /** The signal that Sandstorm sent to end it (timeout, kill, OOM), if it did. */
  signal: string | null
  timedOut: boolean
  oomKilled: boolean
  durationMs: number
  /** The snapshot its sandbox was restored to while it ran: the restore killed it (and every other process). */
  restoredTo?: string
}

/** One sample of a sandbox's usage: GET /v1/sandboxes/:id/metrics answers the series taken every few seconds, /usage one taken now. */
export interface SandboxMetrics {
  /** When it was sampled. */
  timestamp: string
  cpus: number
  /** CPU used since the sample before it (or since the start), as a percentage of its whole CPU limit (E2B's cpuUsedPct). */
  cpuUsedPct: number
  memoryUsedBytes: number
  memoryLimitBytes: number
  /** What it has written to its root filesystem (its writable layer), and its quota. */
  diskUsedBytes: number
  diskLimitBytes: number
  pids: number
}

/** A process started by exec, as listed. */
export interface ProcessInfo {
  pid: number
  argv: string[]
  cwd: string
  startedAt: string
  running: boolean
  result: ProcessResult | null
}

/** Type of a file-system entry. */
export type EntryType = 'file' | 'dir' | 'symlink' | 'other'

/** A file-system entry inside a sandbox. */
export interface EntryInfo {
  name: string
  path: string
  type: EntryType
  size: number
  /** Permission bits, e.g. 0o644. */
  mode: number
  uid: number
  gid: number
  modifiedAt: string
}

/** A template as listed. */
export interface TemplateInfo {
  name: string
  version: number
  description: string
  sizeBytes: number
  buildMs: number
  builtAt: string
  /** What its sandboxes get unless a create says otherwise; without `diskMiB`, the server's default quota. */
  defaults: { memoryMiB: number; cpus: number; diskMiB?: number }
  /** A golden template (promoted from a snapshot): the template it was made on. */
  baseTemplate?: string
  /** A golden template: the snapshot whose layers it stands on. */
  snapshotId?: string
  /** What every sandbox of it runs at create; a create returns once its ready check passes. */
  start?: TemplateStart
  /** Its processes may gain privileges through setuid files (sudo), within the caps and seccomp filter of API root. */
  allowSetuid?: boolean
  /** Where a template made from an image or a Dockerfile came from. */
  source?: TemplateSource
  /** An image template's config: the env, cwd and user its commands get unless they say otherwise; the rest recorded. */
  config?: TemplateImageConfig
  /** Of `sizeBytes`, the bytes in layers that another template also stands on (stored once). */
  sharedBytes?: number
}

/** Where an image template came from. */
export interface TemplateSource {
  kind: 'image' | 'archive' | 'dockerfile'
  /** The image reference (`image`), the FROM of a Dockerfile, or the archive's image name. */
  reference?: string
  /** The manifest digest of the image (for a Dockerfile: of its FROM image). */
  digest?: string
  /** A Dockerfile FROM a template: that template. */
  template?: string
}

/** An image's config as a template keeps it (OCI image config names, camel-cased). */
export interface TemplateImageConfig {
  env: Record<string, string>
  workingDir?: string
  user?: string
  entrypoint?: string[]
  cmd?: string[]
  exposedPorts: number[]
  labels: Record<string, string>
}

/** The body of every error response. */
export interface ErrorBody {
  code: string
  message: string
}
