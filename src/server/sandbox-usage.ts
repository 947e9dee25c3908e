/**
 * A sandbox's usage as the API reports it (GET /v1/sandboxes/:id/usage and /metrics, E2B's
 * metrics): the agent's counters, and CPU as a share of the sandbox's whole CPU limit over the time
 * since an earlier reading of its CPU counter.
 */
import type { AgentApi, AgentSandboxStats } from '../agent/index.js'
import type { CallOptions, SandboxMetrics } from '../shared/index.js'
import type { SandboxRecord } from './catalog.js'

/** A sandbox's CPU counter at a moment: what the next CPU percentage is measured from. */
export interface CpuReading {
  cpuNanos: number
  atMs: number
}

/**
 * CPU used between two readings as a percentage of `cpus` whole CPUs (E2B's `cpuUsedPct`: 100 is
 * every CPU of its limit busy the whole time), two decimals. A counter that went back (the sandbox
 * was restored onto a fresh instance) counts as idle.
 */
export function cpuPercent(before: CpuReading, after: CpuReading, cpus: number): number {
  const wallNanos = Math.max(1, after.atMs - before.atMs) * 1e6 * cpus
  const pct = Math.min(100, Math.max(0, ((after.cpuNanos - before.cpuNanos) / wallNanos) * 100))
  return Math.round(pct * 100) / 100
}

/** One sample of a sandbox from the agent's counters at `atMs`, CPU measured since `before`. */
export function toSandboxMetrics(record: SandboxRecord, stats: AgentSandboxStats, before: CpuReading, atMs: number): SandboxMetrics {
  return {
    timestamp: new Date(atMs).toISOString(),
    cpus: record.cpus,
    cpuUsedPct: cpuPercent(before, { cpuNanos: stats.cpuNanos, atMs }, record.cpus),
    memoryUsedBytes: stats.memoryBytes,
    memoryLimitBytes: record.memoryMiB * 1024 * 1024,
    diskUsedBytes: stats.diskUsedBytes,
    diskLimitBytes: stats.diskLimitBytes || record.diskMiB * 1024 * 1024,
    pids: stats.pids,
  }
}

/** Samples usage on demand, remembering each sandbox's last CPU reading. */
export interface UsageSampler {
  sample(record: SandboxRecord, options?: CallOptions): Promise<SandboxMetrics>
  forget(id: string): void
}

/**
 * A sampler over `agent` for usage asked for now. Its CPU readings are its own, apart from the
 * recorder's series, so that asking does not bend the recorded intervals.
 */
export function createUsageSampler(agent: AgentApi): UsageSampler {
  const last = new Map<string, CpuReading>()
  return {
    async sample(record, options) {
      const s = await agent.stats(record.id, options)
      const now = Date.now()
      const before = last.get(record.id) ?? { cpuNanos: 0, atMs: record.createdAtMs }
      last.set(record.id, { cpuNanos: s.cpuNanos, atMs: now })
      return toSandboxMetrics(record, s, before, now)
    },
    forget: (id) => void last.delete(id),
  }
}
