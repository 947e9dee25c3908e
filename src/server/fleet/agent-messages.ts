/**
 * What an agent tells the server on its own (its registration, its heartbeats' templates, the
 * commands it ran), checked before the server keeps any of it. An agent host may be compromised:
 * a field of the wrong shape once reached the scheduler and made every create of the fleet fail,
 * and a command event without numbers rolled back every agent's batch of the central log.
 */
import { z } from 'zod'
import { agentSandboxSchema } from '../../agent/index.js'
import type { AgentInfo, AgentSandbox } from '../../agent/index.js'
import { SandstormError } from '../../shared/index.js'
import { parseInput, show } from '../validation.js'

const name = z.string().min(1).max(256)
const count = z.number().finite().nonnegative()

const agentInfo = z.object({ hostname: z.string().max(253), runtimes: z.array(name).max(16), cpus: count, memoryMiB: count })
const templates = z.array(name).max(100_000)
const labels = z.record(z.string().max(256), z.string().max(1024)).refine((l) => Object.keys(l).length <= 64, 'at most 64 labels')
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

/** The templates a heartbeat reports, checked. */
export const parseHeartbeatTemplates = (json: string): string[] => field(templates, json, 'heartbeat.templates')

/** A command event, checked. */
export const parseCommandEvent = (json: string): z.infer<typeof commandEvent> => field(commandEvent, json, 'event.command')
