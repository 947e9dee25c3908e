/**
 * What an agent tells the server on its own (its hostname, its registration, its heartbeats, the
 * commands it ran), checked before the server keeps or logs any of it. An agent host may be compromised:
 * a field of the wrong shape once reached the scheduler and made every create of the fleet fail,
 * and a command event without numbers rolled back every agent's batch of the central log.
 */
import { z } from 'zod'
import { agentSandboxSchema, maxTemplatesPerAgent } from '../../agent/index.js'
import type { AgentInfo, AgentSandbox } from '../../agent/index.js'
import type { HeartbeatMessage } from '../../proto/index.js'
import { runtimeNames, SandstormError } from '../../shared/index.js'
import type { AgentMetrics } from '../../shared/index.js'
import { parseInput, show } from '../validation.js'

const name = z.string().min(1).max(256)
const count = z.number().finite().nonnegative()
/** Text without control characters (a log line or a terminal shows it as it is). */
const plain = (min: number, max: number) => z.string().min(min).max(max).regex(/^[^\p{Cc}]*$/u, 'text without control characters')

/** The most a host can plausibly hold: a capacity past these is an agent's lie, and skews placement. */
const most = { cpus: 4096, memoryMiB: 64 * 1024 * 1024, diskMiB: 2 ** 40, load1: 1e6, sandboxes: 1e6 } as const

/** A host name as a resolver takes it: 1-253 printable characters, no spaces. */
export const hostnameSchema = z.string().regex(/^[\x21-\x7e]{1,253}$/, 'a host name of 1-253 printable characters')

/** A host name an agent sent, fit to log whatever it was: at most 253 characters, anything but printable ones shown as "?". */
export const loggableHostname = (raw: unknown): string => String(raw).slice(0, 253).replace(/[^\x21-\x7e]/g, '?')

const agentInfo = z.object({
  hostname: hostnameSchema,
  runtimes: z.array(z.enum(runtimeNames)).max(16),
  cpus: count.max(most.cpus),
  memoryMiB: count.max(most.memoryMiB),
})
const templates = z.array(name).max(maxTemplatesPerAgent)
const labels = z.record(plain(1, 63), plain(0, 256)).refine((l) => Object.keys(l).length <= 64, 'at most 64 labels')
const heartbeat = z.object({
  load1: count.max(most.load1),
  memoryFreeMib: count.max(most.memoryMiB),
  memoryTotalMib: count.max(most.memoryMiB),
  diskFreeMib: count.max(most.diskMiB),
  sandboxes: z.number().int().nonnegative().max(most.sandboxes),
})
// A duration may come out negative (the agent's clock stepped back). An argv is bounded by what
// execve takes (no word over 128 KiB, and 2 MiB in all, so some 230k empty words at most), and
// the log cuts it further (command-log.ts).
const commandEvent = z.object({
  sandboxId: name,
  argv: z.array(z.string().max(1 << 17)).max(1 << 18),
  exitCode: z.number().int(),
  durationMs: z.number().finite().transform((n) => Math.max(0, n)),
  outputBytes: count,
})

/** Parses one JSON field of an agent's message against its schema; a bad one is `invalid_argument` naming the field (as the HTTP API words it). */
function field<T>(schema: z.ZodType<T>, json: string, what: string): T {
  let value: unknown
  try {
    value = JSON.parse(json)
  } catch {
    throw new SandstormError('invalid_argument', `${what}: expected JSON, got ${show(json)}`)
  }
  return parseInput(z.object({ [what]: schema }), { [what]: value })[what] as T
}

/** An agent's registration, checked (the id is the one its certificate names, never its own word). */
export function parseRegistration(agentId: string, msg: { infoJson: string; sandboxesJson: string; templatesJson: string; labelsJson: string }): {
  info: AgentInfo
  sandboxes: AgentSandbox[]
  templates: string[]
  labels: Record<string, string>
} {
  return {
    info: { ...field(agentInfo, msg.infoJson, 'register.info'), id: agentId },
    sandboxes: field(z.array(agentSandboxSchema).max(100_000), msg.sandboxesJson || '[]', 'register.sandboxes'),
    templates: field(templates, msg.templatesJson || '[]', 'register.templates'),
    labels: field(labels, msg.labelsJson || '{}', 'register.labels'),
  }
}

/** A heartbeat as the registry keeps it: the host's metrics, and its templates when it names them. */
export interface Heartbeat {
  metrics: AgentMetrics
  templates?: string[]
}

/** A heartbeat, checked: numbers finite, non-negative and within what a host can hold. */
export function parseHeartbeat(msg: HeartbeatMessage): Heartbeat {
  const hb = parseInput(z.object({ heartbeat }), { heartbeat: { load1: msg.load1, memoryFreeMib: msg.memoryFreeMib, memoryTotalMib: msg.memoryTotalMib, diskFreeMib: msg.diskFreeMib, sandboxes: msg.sandboxes } }).heartbeat
  return {
    metrics: { load1: hb.load1, memoryFreeMiB: hb.memoryFreeMib, memoryTotalMiB: hb.memoryTotalMib, diskFreeMiB: hb.diskFreeMib, sandboxes: hb.sandboxes },
    ...(msg.templatesJson ? { templates: field(templates, msg.templatesJson, 'heartbeat.templates') } : {}),
  }
}

/** A command event, checked. */
export const parseCommandEvent = (json: string): z.infer<typeof commandEvent> => field(commandEvent, json, 'event.command')
