/**
 * The answers of the link's unary calls (link-contract.ts) as the server accepts them: one schema
 * per call, typed by the contract, so that a call added there without a schema here, or a schema
 * whose output is not the contract's, fails to compile. An agent host may be compromised: its
 * answers are checked where they arrive (server/fleet/agent-connection.ts), before any caller
 * keeps one in the catalog or plans with it. Unknown fields are dropped; strings and lists are
 * bounded, numbers finite.
 */
import { z } from 'zod'
import { limits, runtimeNames, SandstormError, templateStartSchema } from '../shared/index.js'
import type { EntryInfo, ProcessInfo, ProcessResult, TemplateInfo } from '../shared/index.js'
import type { AgentSandbox, AgentSandboxStats } from './agent-api.js'
import type { LinkUnary, LinkUnaryName } from './link-contract.js'
import type { AgentSnapshot } from './snapshot-api.js'

/** Templates one agent may offer; past it, its answer (and its registration) is refused. */
export const maxTemplatesPerAgent = 1000

const text = (max: number) => z.string().max(max)
const name = z.string().min(1).max(256)
/** A sandbox or snapshot id: ours are `sb-…`/`snap-…`; an agent's own (a build step's) may differ, but not in kind. */
const id = z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'an id of letters, digits, _ . - (1-128 chars)')
const count = z.number().nonnegative().max(Number.MAX_SAFE_INTEGER)
const int = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)
const time = text(64)
const path = text(8192)
const env = z.record(text(4096), text(1 << 20)).refine((e) => Object.keys(e).length <= 4096, 'at most 4096 variables')
/** Any answer: the call's output is void, so nothing of it is kept. */
const none = z.unknown().transform((): void => undefined)
const list = <T>(item: z.ZodType<T>, max = 100_000) => z.array(item).max(max)

/** A sandbox as an agent reports it (also in its registration). */
export const agentSandboxSchema: z.ZodType<AgentSandbox> = z.object({
  id,
  template: name,
  runtime: z.enum(runtimeNames),
  status: z.enum(['running', 'paused', 'stopped']),
  start: z.enum(['golden', 'cold']).optional(),
  startReason: text(4096).optional(),
})

const templateInfo: z.ZodType<TemplateInfo> = z.object({
  name,
  version: int,
  description: text(4096),
  sizeBytes: count,
  buildMs: count,
  builtAt: time,
  // Within what a create may ask for: a template's defaults steer where its sandboxes are placed.
  defaults: z.object({
    memoryMiB: z.number().positive().max(limits.maxMemoryMiB),
    cpus: z.number().positive().max(limits.maxCpus),
    diskMiB: z.number().nonnegative().max(limits.maxDiskMiB).optional(),
  }),
  baseTemplate: name.optional(),
  snapshotId: id.optional(),
  start: templateStartSchema.optional(),
  allowSetuid: z.boolean().optional(),
  source: z.object({ kind: z.enum(['image', 'archive', 'dockerfile']), reference: text(4096).optional(), digest: text(256).optional(), template: name.optional() }).optional(),
  config: z
    .object({
      env,
      workingDir: path.optional(),
      user: text(256).optional(),
      entrypoint: list(text(1 << 17), 4096).optional(),
      cmd: list(text(1 << 17), 4096).optional(),
      exposedPorts: list(z.number().int().min(0).max(65535), 65536),
      labels: z.record(text(4096), text(1 << 16)).refine((l) => Object.keys(l).length <= 4096, 'at most 4096 labels'),
    })
    .optional(),
  sharedBytes: count.optional(),
})

const stats: z.ZodType<AgentSandboxStats> = z.object({ memoryBytes: count, cpuNanos: count, pids: int, diskUsedBytes: count, diskLimitBytes: count })

const processResult: z.ZodType<ProcessResult> = z.object({
  exitCode: z.number().int(),
  signal: text(32).nullable(),
  timedOut: z.boolean(),
  oomKilled: z.boolean(),
  durationMs: count,
  restoredTo: id.optional(),
})

const processInfo: z.ZodType<ProcessInfo> = z.object({
  pid: int,
  // An exec's argv reaches execve, which takes no word longer than 128 KiB.
  argv: list(text(1 << 17), 1 << 18),
  cwd: path,
  startedAt: time,
  running: z.boolean(),
  result: processResult.nullable(),
})

const entryInfo: z.ZodType<EntryInfo> = z.object({
  name: path,
  path,
  type: z.enum(['file', 'dir', 'symlink', 'other']),
  size: count,
  mode: int,
  uid: int,
  gid: int,
  modifiedAt: time,
})

const snapshot: z.ZodType<AgentSnapshot> = z.object({
  id,
  parentId: id.nullable(),
  sandboxId: id,
  template: name,
  label: text(256),
  driver: text(64),
  depth: int,
  memoryMiB: count,
  cpus: count,
  pidsMax: int,
  diskMiB: count,
  cwd: path,
  createdAt: time,
  env,
  // A machine snapshot says what it runs on.
  runtime: z.enum(runtimeNames).optional(),
})

/**
 * A statsMany answer: a sample that is not a whole one (a null, a negative count) is left out
 * alone, as a sandbox that cannot be measured now is, rather than costing every other sample.
 */
const statsMany: z.ZodType<Record<string, AgentSandboxStats>> = z
  .record(z.string(), z.unknown())
  .refine((all) => Object.keys(all).length <= 100_000, 'at most 100000 samples')
  .transform((all) => {
    const kept: Record<string, AgentSandboxStats> = {}
    for (const [key, value] of Object.entries(all)) {
      const sample = stats.safeParse(value)
      if (sample.success && id.safeParse(key).success) kept[key] = sample.data
    }
    return kept
  })

/** The schema of each unary call's answer, as the contract types it. */
export const linkReplies: { [K in LinkUnaryName]: z.ZodType<LinkUnary[K]['output']> } = {
  templates: list(templateInfo, maxTemplatesPerAgent),
  create: agentSandboxSchema,
  destroy: none,
  list: list(agentSandboxSchema),
  pause: none,
  resume: none,
  stats,
  statsMany,
  wait: processResult,
  processes: list(processInfo),
  signal: none,
  resizePty: none,
  listDir: list(entryInfo, 1_000_000),
  stat: entryInfo,
  mkdir: none,
  remove: none,
  rename: none,
  updateNetwork: none,
  'snapshots.take': snapshot,
  'snapshots.get': snapshot,
  'snapshots.list': list(snapshot),
  'snapshots.remove': none,
  'golden.promote': templateInfo,
  'golden.rollback': templateInfo,
  'golden.standingOn': list(id),
}

/**
 * An agent's answer to `kind`, parsed and checked against its schema; anything else is an
 * `internal` error that names the agent and the call and is not shown to clients (it is the
 * agent's say-so, and may carry anything).
 */
export function parseLinkReply<K extends LinkUnaryName>(agentId: string, kind: K, json: string): LinkUnary[K]['output'] {
  let value: unknown
  try {
    value = json ? JSON.parse(json) : null
  } catch {
    throw new SandstormError('internal', `agent "${agentId}" answered ${kind} with something that is not JSON`, { expose: false })
  }
  const parsed = linkReplies[kind].safeParse(value)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]
  const where = issue?.path.length ? `at ${issue.path.slice(0, 4).join('.')}` : 'at the top'
  throw new SandstormError('internal', `agent "${agentId}" answered ${kind} out of its contract (${where}: ${String(issue?.message).slice(0, 200)}); refused`, { expose: false })
}
