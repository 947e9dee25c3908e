/**
 * A sandbox's usage now (GET /v1/sandboxes/:id/metrics, E2B's metrics): the agent's counters, and
 * CPU as a share of the sandbox's limit since the previous sample of it (the first: since it started).
 */
import type { AgentApi } from '../agent/index.js'
import type { CallOptions, SandboxMetrics } from '../shared/index.js'
import type { SandboxRecord } from './catalog.js'

/** Samples usage, remembering each sandbox's last CPU reading. */
export interface UsageSampler {
  sample(record: SandboxRecord, options?: CallOptions): Promise<SandboxMetrics>
  forget(id: string): void
}

/** A sampler over `agent`. */
export function createUsageSampler(agent: AgentApi): UsageSampler {
  const last = new Map<string, { cpuNanos: number; atMs: number }>()
  return {
    async sample(record, options) {
      const s = await agent.stats(record.id, options)
      const now = Date.now()
      const before = last.get(record.id) ?? { cpuNanos: 0, atMs: record.createdAtMs }
      last.set(record.id, { cpuNanos: s.cpuNanos, atMs: now })
      const wallNanos = Math.max(1, now - before.atMs) * 1e6 * record.cpus
      const pct = Math.min(100, Math.max(0, ((s.cpuNanos - before.cpuNanos) / wallNanos) * 100))
      return {
        timestamp: new Date(now).toISOString(),
        cpus: record.cpus,
        cpuUsedPct: Math.round(pct * 100) / 100,
        memoryUsedBytes: s.memoryBytes,
        memoryLimitBytes: record.memoryMiB * 1024 * 1024,
        diskUsedBytes: s.diskUsedBytes,
        diskLimitBytes: s.diskLimitBytes || record.diskMiB * 1024 * 1024,
        pids: s.pids,
      }
    },
    forget: (id) => void last.delete(id),
  }
}
