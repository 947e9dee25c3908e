/**
 * Samples every running or paused sandbox every `intervalMs` (E2B samples every 5 s) into the
 * usage history: one batched `statsMany` call per tick (the fleet router makes it one per agent),
 * which reads cgroup counters and a statfs and wakes no paused sandbox. Ticks never overlap: a slow
 * one delays the next, which then starts at once.
 */
import type { AgentApi } from '../agent/index.js'
import { SandstormError, type Logger } from '../shared/index.js'
import type { SandboxCatalog } from './catalog.js'
import { toSandboxMetrics, type CpuReading } from './sandbox-usage.js'
import type { UsageHistory, UsageSample } from './usage-history.js'

/** Options of startUsageRecorder. */
export interface UsageRecorderOptions {
  agent: Pick<AgentApi, 'statsMany'>
  catalog: Pick<SandboxCatalog, 'list'>
  history: UsageHistory
  /** Time between samples. */
  intervalMs: number
  logger: Logger
  /** Stops the ticks; a tick in flight ends with it. */
  signal: AbortSignal
}

/** A started recorder. */
export interface UsageRecorder {
  /** One tick now (tests, and the first look after a start). */
  tick(): Promise<void>
}

/** Starts sampling; the first tick runs one interval from now. */
export function startUsageRecorder(options: UsageRecorderOptions): UsageRecorder {
  const { agent, catalog, history, intervalMs, logger, signal } = options
  // The first sight of a sandbox only reads its CPU counter: a sample's CPU % needs a reading before it.
  const readings = new Map<string, CpuReading>()

  // Every tick's time is after the one before, even if the clock steps back: a sample never
  // overwrites another (they are keyed by sandbox and time) and the series stays ordered.
  let lastAtMs = 0
  async function tick(): Promise<void> {
    const atMs = (lastAtMs = Math.max(Date.now(), lastAtMs + 1))
    const records = catalog.list().filter((r) => r.state === 'running' || r.state === 'paused')
    const live = new Set(records.map((r) => r.id))
    for (const id of readings.keys()) if (!live.has(id)) readings.delete(id)
    if (records.length > 0) {
      const stats = await agent.statsMany([...live], { signal })
      // Closing: the database may be closed already.
      if (signal.aborted) return
      const samples: UsageSample[] = []
      for (const record of records) {
        const s = stats[record.id]
        if (!s) continue
        const before = readings.get(record.id)
        readings.set(record.id, { cpuNanos: s.cpuNanos, atMs })
        if (!before) continue
        const { timestamp: _, ...metrics } = toSandboxMetrics(record, s, before, atMs)
        samples.push({ sandboxId: record.id, atMs, ...metrics })
      }
      history.append(samples)
      logger.debug({ sandboxes: records.length, samples: samples.length, tickMs: Date.now() - atMs }, 'usage sampled')
    }
    // The catalog is read again: a sandbox destroyed while its sample was taken leaves nothing.
    history.retain(new Set(catalog.list().map((r) => r.id)))
  }

  let timer: NodeJS.Timeout | undefined
  /** The next tick, a whole interval after the sample at `fromMs` by the wall clock the samples are stamped with. */
  const schedule = (fromMs: number): void => {
    if (signal.aborted) return
    timer = setTimeout(() => {
      // A timer counts from the event loop's cached clock, which lags behind while the loop is
      // busy: it can fire early by the wall clock. Samples are never closer than the interval.
      if (Date.now() < fromMs + intervalMs) return schedule(fromMs)
      run()
    }, Math.max(0, fromMs + intervalMs - Date.now()))
    timer.unref()
  }
  const run = (): void => {
    tick()
      .catch((err: unknown) => {
        if (!signal.aborted) logger.warn({ err: SandstormError.from(err) }, 'could not sample sandbox usage')
      })
      .finally(() => schedule(lastAtMs))
  }
  signal.addEventListener('abort', () => clearTimeout(timer), { once: true })
  schedule(Date.now())
  return { tick }
}
