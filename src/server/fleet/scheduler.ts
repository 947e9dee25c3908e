/** Where a new sandbox goes: a live agent with the template and the room, the least loaded first. */
import { SandstormError } from '../../shared/index.js'
import type { AgentEntry } from './agent-registry.js'

/** What an agent already holds, from the catalog. */
export interface AgentLoad {
  sandboxes: number
  memoryMiB: number
  cpus: number
}

/** A create to place. */
export interface Placement {
  template: string
  memoryMiB: number
  cpus: number
  /** Labels the agent must carry (from the sandbox's `agent.<key>` labels). */
  constraints: Record<string, string>
  /** A runtime the agent must offer (`info.runtimes`), when the create names one. */
  runtime?: string
}

/** Options of pickAgent. */
export interface SchedulerOptions {
  /** Sandboxes one agent may hold. @default 500 */
  maxSandboxesPerAgent?: number
  /** CPUs promised per host CPU (sandboxes rarely use all of theirs). @default 4 */
  cpuOvercommit?: number
}

/** Sandbox labels with this prefix are placement constraints on the agent's labels. */
export const constraintPrefix = 'agent.'

/** The placement constraints among a sandbox's labels. */
export function constraintsOf(labels: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(labels).filter(([k]) => k.startsWith(constraintPrefix)).map(([k, v]) => [k.slice(constraintPrefix.length), v]))
}

/** Picks the agent for a create, or throws saying why none fits. */
export function pickAgent(agents: AgentEntry[], loads: Map<string, AgentLoad>, want: Placement, options: SchedulerOptions = {}): AgentEntry {
  const maxSandboxes = options.maxSandboxesPerAgent ?? 500
  const cpuOvercommit = options.cpuOvercommit ?? 4
  const live = agents.filter((a) => a.state === 'live')
  if (live.length === 0) throw new SandstormError('unavailable', 'no agent is connected: expected at least one live agent (start one with `sandstorm agent`)')
  const labelled = live.filter((a) => Object.entries(want.constraints).every(([k, v]) => a.labels[k] === v))
  if (labelled.length === 0) {
    throw new SandstormError('failed_precondition', `no live agent has the labels ${JSON.stringify(want.constraints)}`)
  }
  const offering = want.runtime ? labelled.filter((a) => a.info.runtimes.includes(want.runtime!)) : labelled
  if (offering.length === 0) {
    const offered = [...new Set(labelled.flatMap((a) => a.info.runtimes))].join(', ') || 'none'
    throw new SandstormError('failed_precondition', `no live agent offers runtime "${want.runtime}": expected one of ${offered} (install qemu-system-x86 on an agent's host for qemu)`)
  }
  const withTemplate = offering.filter((a) => a.templates.includes(want.template))
  if (withTemplate.length === 0) throw new SandstormError('not_found', `no live agent has the template "${want.template}"`)
  const empty: AgentLoad = { sandboxes: 0, memoryMiB: 0, cpus: 0 }
  const roomy = withTemplate.filter((a) => {
    const load = loads.get(a.id) ?? empty
    return load.sandboxes < maxSandboxes && load.memoryMiB + want.memoryMiB <= a.info.memoryMiB && load.cpus + want.cpus <= a.info.cpus * cpuOvercommit
  })
  if (roomy.length === 0) throw new SandstormError('resource_exhausted', `every agent with "${want.template}" is full (memory, cpus or sandbox count)`)
  // Spread: fewest sandboxes, then least memory promised, then lowest load average.
  const score = (a: AgentEntry): [number, number, number] => {
    const load = loads.get(a.id) ?? empty
    return [load.sandboxes, load.memoryMiB / a.info.memoryMiB, a.metrics?.load1 ?? 0]
  }
  return roomy.reduce((best, a) => {
    const [s1, m1, l1] = score(a)
    const [s2, m2, l2] = score(best)
    return s1 < s2 || (s1 === s2 && (m1 < m2 || (m1 === m2 && l1 < l2))) ? a : best
  })
}
