/** GET /v1/agents and GET /v1/logs: the fleet's agents and its central command log. */

/** Host metrics from an agent's last heartbeat. */
export interface AgentMetrics {
  load1: number
  memoryFreeMiB: number
  memoryTotalMiB: number
  diskFreeMiB: number
  sandboxes: number
}

/** An agent of the fleet, as GET /v1/agents lists it. */
export interface AgentInfo {
  id: string
  hostname: string
  state: 'live' | 'lost'
  labels: Record<string, string>
  runtimes: string[]
  cpus: number
  memoryMiB: number
  templates: string[]
  lastHeartbeatAt: string
  metrics: AgentMetrics | null
}

/** One finished command run in a sandbox, as the server logged it (GET /v1/logs). */
export interface CommandLogEntry {
  sandboxId: string
  agentId: string
  argv: string[]
  exitCode: number
  durationMs: number
  outputBytes: number
  endedAt: string
}
