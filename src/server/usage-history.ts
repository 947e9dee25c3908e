/**
 * Every sandbox's usage samples, in the catalog's SQLite database (table `sandbox_usage`), so that
 * they last as long as the sandbox, across server restarts, and go with it. Bounded: past
 * `maxSamples` for one sandbox its oldest samples are dropped (at 5 s a sample, the default holds
 * 24 hours, E2B's longest sandbox life).
 */
import type { SandboxMetrics } from '../shared/index.js'
import type { CatalogDb } from './db.js'

/** One sample of one sandbox; `atMs` is when it was read. */
export interface UsageSample extends Omit<SandboxMetrics, 'timestamp'> {
  sandboxId: string
  atMs: number
}

/** Options of createUsageHistory. */
export interface UsageHistoryOptions {
  /** Samples kept per sandbox; older ones are dropped. @default 17280 (24 hours at 5 s) */
  maxSamples?: number
}

/** The samples, kept and read by sandbox and time. */
export interface UsageHistory {
  /** Adds samples (one transaction), then trims any sandbox past the bound. */
  append(samples: UsageSample[]): void
  /** A sandbox's samples with `fromMs <= at <= toMs`, oldest first. */
  range(sandboxId: string, fromMs: number, toMs: number): SandboxMetrics[]
  /** Removes the samples of every sandbox not in `live` that has any. */
  retain(live: ReadonlySet<string>): void
  /** How many samples a sandbox has. */
  count(sandboxId: string): number
}

interface Row {
  at: number
  cpus: number
  cpu_pct: number
  mem_used: number
  mem_limit: number
  disk_used: number
  disk_limit: number
  pids: number
}

/** Default bound: a day of samples at E2B's interval of 5 s. */
export const defaultMaxUsageSamples = 17_280

/** Opens the history over the catalog's database. */
export function createUsageHistory(db: CatalogDb, options: UsageHistoryOptions = {}): UsageHistory {
  const maxSamples = options.maxSamples ?? defaultMaxUsageSamples
  // Trimmed in batches rather than on every append, so a full sandbox costs one delete now and then.
  const slack = Math.max(8, Math.floor(maxSamples / 16))
  const insert = db.prepare(
    `INSERT OR REPLACE INTO sandbox_usage (sandbox_id, at, cpus, cpu_pct, mem_used, mem_limit, disk_used, disk_limit, pids)
     VALUES (@sandboxId, @atMs, @cpus, @cpuUsedPct, @memoryUsedBytes, @memoryLimitBytes, @diskUsedBytes, @diskLimitBytes, @pids)`,
  )
  const select = db.prepare<[string, number, number], Row>('SELECT * FROM sandbox_usage WHERE sandbox_id = ? AND at >= ? AND at <= ? ORDER BY at')
  const countOf = db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM sandbox_usage WHERE sandbox_id = ?')
  const trim = db.prepare<[string, string, number]>(
    'DELETE FROM sandbox_usage WHERE sandbox_id = ? AND at < (SELECT at FROM sandbox_usage WHERE sandbox_id = ? ORDER BY at DESC LIMIT 1 OFFSET ?)',
  )
  const remove = db.prepare<[string]>('DELETE FROM sandbox_usage WHERE sandbox_id = ?')
  // Samples per sandbox that has any, so that trimming and removal need no scan of the table.
  const counts = new Map(db.prepare<[], { sandbox_id: string; n: number }>('SELECT sandbox_id, count(*) AS n FROM sandbox_usage GROUP BY sandbox_id').all().map((r) => [r.sandbox_id, r.n]))

  const appendAll = db.transaction((samples: UsageSample[]) => {
    for (const s of samples) {
      const { sandboxId, atMs, cpus, cpuUsedPct, memoryUsedBytes, memoryLimitBytes, diskUsedBytes, diskLimitBytes, pids } = s
      insert.run({ sandboxId, atMs, cpus, cpuUsedPct, memoryUsedBytes, memoryLimitBytes, diskUsedBytes, diskLimitBytes, pids })
      const n = (counts.get(sandboxId) ?? countOf.get(sandboxId)!.n - 1) + 1
      if (n > maxSamples + slack) {
        // Keeps the newest maxSamples: everything older than the one at that offset goes.
        trim.run(sandboxId, sandboxId, maxSamples - 1)
        counts.set(sandboxId, maxSamples)
      } else counts.set(sandboxId, n)
    }
  })

  return {
    append(samples) {
      if (samples.length > 0) appendAll(samples)
    },
    range(sandboxId, fromMs, toMs) {
      return select.all(sandboxId, fromMs, toMs).map((r) => ({
        timestamp: new Date(r.at).toISOString(),
        cpus: r.cpus,
        cpuUsedPct: r.cpu_pct,
        memoryUsedBytes: r.mem_used,
        memoryLimitBytes: r.mem_limit,
        diskUsedBytes: r.disk_used,
        diskLimitBytes: r.disk_limit,
        pids: r.pids,
      }))
    },
    retain(live) {
      for (const id of counts.keys()) {
        if (live.has(id)) continue
        remove.run(id)
        counts.delete(id)
      }
    },
    count: (sandboxId) => countOf.get(sandboxId)!.n,
  }
}
