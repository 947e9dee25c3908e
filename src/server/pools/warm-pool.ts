import type { AgentApi, AgentSandbox } from '../../agent/index.js'
import { newId, SandstormError } from '../../shared/index.js'
import type { AgentNetwork, Logger } from '../../shared/index.js'
import { goldenOrigin, type GoldenOrigin } from '../golden-source.js'
import type { PooledConfig } from './pool-match.js'
import type { PoolConfig } from './pool-store.js'

/** A ready sandbox of a pool: started from the template's defaults, never handed out yet. */
export interface PooledSandbox extends PooledConfig {
  id: string
  runtime: string
  readyAtMs: number
  /** The golden version it started from, when the template is golden and the agent did not boot it cold. */
  golden?: GoldenOrigin
}

/** Options of createWarmPool. */
export interface WarmPoolOptions {
  config: PoolConfig
  agent: AgentApi
  logger: Logger
  /** Pids limit of pooled sandboxes: the server's default, so that a create without one matches. */
  pidsMax: number
  /** Disk quota of pooled sandboxes when their template names none: the server's default. */
  diskMiB: number
  /** Network of pooled sandboxes: the server's default; a create's own policy is set at hand-over. */
  network: AgentNetwork
  /** Background creates run under it; once it fires the pool starts nothing more. */
  shutdownSignal: AbortSignal
  /** Wait after a failed start before trying again. @default 5_000 */
  retryMs?: number
  /** Pooled sandboxes started at once. @default 2 */
  parallelStarts?: number
  /** Called when a pooled sandbox is ready, with how long its start took. */
  onReady?(latencyMs: number): void
  /** Called whenever the count of ready sandboxes changes. */
  onChange?(): void
}

/** One template's pool: ready sandboxes, refilled in the background. */
export interface WarmPool {
  readonly template: string
  config(): PoolConfig
  setConfig(config: PoolConfig): void
  /**
   * Takes the oldest ready sandbox out of the pool for good, or undefined when none is ready. The
   * caller calls `refill` once the hand-over is done: a start begun at once would take the CPU
   * (runc's fork, the layer) from the very hand-over it replaces.
   * With `current`, ready sandboxes that fail it (started on another version) are destroyed instead.
   */
  take(current?: (sandbox: PooledSandbox) => boolean): PooledSandbox | undefined
  /** Whether any ready sandbox started from a golden version. */
  holdsGolden(): boolean
  /** A create found the pool empty: grow toward `max` (idle ones above `min` are reaped later). */
  noteMiss(): void
  /** Starts sandboxes until ready + starting reaches the target. */
  refill(): void
  /** Destroys ready sandboxes above `min` that have waited longer than idleMs. */
  reap(idleMs: number, nowMs?: number): Promise<void>
  /** Replaces ready sandboxes that the agent no longer runs, or runs but not as running. */
  check(onHost: Map<string, AgentSandbox>): Promise<void>
  counts(): { ready: number; starting: number; target: number }
  /** The config its sandboxes start with, once one has started. */
  pooledConfig(): PooledConfig | undefined
  /**
   * Stops refilling and destroys every pooled sandbox: the ready ones at once, those still starting
   * once their start ends (the pool was deleted, or the server is closing). Resolves when all are gone.
   */
  drain(reason?: string): Promise<void>
}

/** How long one destroy of a pooled sandbox may take before it is logged as failed (and left to the next start's adoption). */
const destroyTimeoutMs = 60_000

/** Creates a pool; call `refill` to start it. */
export function createWarmPool(options: WarmPoolOptions): WarmPool {
  const { agent, logger, shutdownSignal } = options
  const retryMs = options.retryMs ?? 5_000
  const parallelStarts = options.parallelStarts ?? 2
  let config = options.config
  let target = config.min
  let drained = false
  let starting = 0
  let retryTimer: NodeJS.Timeout | undefined
  let drainReason = 'pool deleted'
  /** Starts under way, for drain to wait on. */
  const inFlight = new Set<Promise<void>>()
  let shape: PooledConfig | undefined
  const ready: PooledSandbox[] = []
  const log = logger.child({ pool: config.template })
  const changed = (): void => options.onChange?.()

  const destroy = async (id: string, reason: string): Promise<void> => {
    try {
      // Not under shutdownSignal: a destroy is what shutdown waits for, and one cut short would leak.
      await agent.destroy(id, { timeoutMs: destroyTimeoutMs })
      log.info({ sandboxId: id, reason }, 'pooled sandbox destroyed')
    } catch (err) {
      if (err instanceof SandstormError && err.code === 'not_found') return
      // Not in the catalog, so the next start destroys it as an orphan.
      log.error({ sandboxId: id, reason, err }, 'could not destroy a pooled sandbox')
    }
  }

  const startOne = async (): Promise<void> => {
    const startedAt = performance.now()
    const templates = await agent.templates({ signal: shutdownSignal })
    const template = templates.find((t) => t.name === config.template)
    if (!template) throw new SandstormError('not_found', `pool template "${config.template}" is not built: expected one of ${templates.map((t) => t.name).join(', ') || '(none built)'}`)
    const pooled = { template: template.name, memoryMiB: template.defaults.memoryMiB, cpus: template.defaults.cpus, pidsMax: options.pidsMax, diskMiB: template.defaults.diskMiB ?? options.diskMiB }
    shape = pooled
    const id = newId('sb')
    const sandbox = await agent.create({ id, ...pooled, env: {}, network: options.network, background: true }, { signal: shutdownSignal })
    // Drained while it started: it goes now. (Started past shutdown, it is kept for the drain that follows.)
    if (drained) return destroy(id, drainReason)
    shape = { ...pooled, runtime: sandbox.runtime }
    const golden = sandbox.start === 'cold' ? undefined : goldenOrigin(template, pooled)
    ready.push({ id, runtime: sandbox.runtime, readyAtMs: Date.now(), ...pooled, ...(golden ? { golden } : {}) })
    options.onReady?.(performance.now() - startedAt)
    log.debug({ sandboxId: id, ready: ready.length }, 'pooled sandbox ready')
    changed()
  }

  const refill = (): void => {
    if (drained || shutdownSignal.aborted || retryTimer) return
    target = Math.min(Math.max(target, config.min), config.max)
    while (ready.length + starting < target && starting < parallelStarts) {
      starting++
      const started = startOne().then(
        () => {
          starting--
          refill()
        },
        (err: unknown) => {
          starting--
          if (shutdownSignal.aborted || drained) return
          log.error({ err, retryMs }, 'could not start a pooled sandbox; will try again')
          retryTimer = setTimeout(() => {
            retryTimer = undefined
            refill()
          }, retryMs)
          retryTimer.unref()
        },
      )
      inFlight.add(started)
      void started.finally(() => inFlight.delete(started))
    }
  }

  return {
    template: config.template,
    config: () => config,
    setConfig(next) {
      config = next
      target = Math.min(Math.max(target, next.min), next.max)
      // Shrinking below what is ready: the surplus goes now, not after the idle time.
      const surplus = ready.length - next.max
      if (surplus > 0) for (const s of ready.splice(0, surplus)) void destroy(s.id, 'pool shrunk')
      changed()
      refill()
    },
    take(current) {
      if (current) {
        const stale = ready.filter((r) => !current(r))
        for (const s of stale) {
          ready.splice(ready.indexOf(s), 1)
          void destroy(s.id, 'template version changed')
        }
        if (stale.length > 0) changed()
      }
      // Oldest first; a sandbox started before the template's defaults changed is not what is asked for.
      const at = ready.findIndex((r) => r.memoryMiB === shape?.memoryMiB && r.cpus === shape.cpus)
      const sandbox = at < 0 ? undefined : ready.splice(at, 1)[0]
      if (sandbox) changed()
      return sandbox
    },
    noteMiss() {
      target = Math.min(target + 1, config.max)
      refill()
    },
    refill,
    async reap(idleMs, nowMs = Date.now()) {
      const idle = ready.filter((s) => nowMs - s.readyAtMs >= idleMs)
      const surplus = Math.min(idle.length, ready.length - config.min)
      if (surplus <= 0) return
      const gone = idle.slice(0, surplus)
      for (const s of gone) ready.splice(ready.indexOf(s), 1)
      target = Math.max(config.min, target - surplus)
      changed()
      await Promise.all(gone.map((s) => destroy(s.id, 'idle above min')))
    },
    async check(onHost) {
      const broken = ready.filter((s) => onHost.get(s.id)?.status !== 'running')
      if (broken.length === 0) return
      for (const s of broken) ready.splice(ready.indexOf(s), 1)
      log.warn({ sandboxIds: broken.map((s) => s.id) }, 'pooled sandboxes failed their health check; replacing them')
      changed()
      await Promise.all(broken.map((s) => destroy(s.id, 'failed health check')))
      refill()
    },
    holdsGolden: () => ready.some((r) => r.golden !== undefined),
    counts: () => ({ ready: ready.length, starting, target }),
    pooledConfig: () => shape,
    async drain(reason = 'pool deleted') {
      drained = true
      drainReason = reason
      clearTimeout(retryTimer)
      const all = ready.splice(0)
      changed()
      await Promise.all([...all.map((s) => destroy(s.id, reason)), ...inFlight])
    },
  }
}
