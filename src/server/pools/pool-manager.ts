import type { AgentApi } from '../../agent/index.js'
import { agentNetworkOf, linkSignal, SandstormError, throwIfAborted } from '../../shared/index.js'
import type { CallOptions, Logger, PoolInfo, SandboxInfo, SandboxNetwork, SandboxStartSource } from '../../shared/index.js'
import type { SandboxCatalog } from '../catalog.js'
import type { GoldenOrigin } from '../golden-source.js'
import type { CatalogDb } from '../db.js'
import type { ServerMetrics } from '../metrics.js'
import { defaultPidsMax } from '../sandbox-service.js'
import type { CreateSandboxInput, SandboxService } from '../sandbox-service.js'
import { matchesPool } from './pool-match.js'
import { createPoolMetrics } from './pool-metrics.js'
import { createPoolStore } from './pool-store.js'
import { matchesPoolFromSnapshot, restorableFromPool, restoreHandedOver } from './snapshot-handover.js'
import type { PoolConfig } from './pool-store.js'
import { createWarmPool } from './warm-pool.js'
import type { PooledSandbox, WarmPool } from './warm-pool.js'

/** Where a created sandbox came from: a warm pool's hand-over, or a start on demand. */
export type CreateSource = Extract<SandboxStartSource, 'pool' | 'cold'>

/**
 * A create's answer: the sandbox, where it came from (`source`, set when the template has a pool)
 * and, for a golden template, what it is (`golden`: the version it started from).
 */
export type CreatedSandboxInfo = SandboxInfo & { source?: CreateSource; golden?: GoldenOrigin }

/** Options of createWarmPools. */
export interface WarmPoolsOptions {
  agent: AgentApi
  db: CatalogDb
  catalog: SandboxCatalog
  /** The service pooled sandboxes are handed over to, and that cold creates go through. */
  sandboxes: SandboxService
  metrics: ServerMetrics
  logger: Logger
  shutdownSignal: AbortSignal
  /** Ready sandboxes above `min` that waited this long are destroyed. @default 5 minutes */
  idleMs?: number
  /** How often pooled sandboxes are checked (and idle ones reaped). @default 10_000 */
  checkIntervalMs?: number
}

/** Every template's warm pool, their configs in SQLite, and the create fast path. */
export interface WarmPools {
  /** Every pool, stored and default, by template. */
  list(): PoolInfo[]
  /**
   * Creates or resizes a template's pool and stores it (a default pool of the template becomes a
   * stored one); `not_found` for a template the agent does not have.
   */
  set(template: string, size: { min: number; max: number }, options?: CallOptions): Promise<PoolInfo>
  /**
   * Deletes a pool and destroys its ready sandboxes; handed-out ones are not touched. A default
   * pool is gone until the next start, which keeps the defaults it is given again.
   */
  remove(template: string): Promise<void>
  /**
   * Keeps pools without storing them (`sandstorm up`'s defaults): a stored pool of the same template
   * wins, and a template the agent has not built is skipped with one log line. They open in the
   * background after one look at the agent's templates, so call it once the server answers: a
   * default pool never delays or fails a start. Until then `waitReady` of one waits.
   */
  keepDefaults(defaults: readonly PoolConfig[]): void
  /** Resolves once the pool has at least `count` ready (`deadline_exceeded` after timeoutMs). */
  waitReady(template: string, count: number, options?: CallOptions): Promise<PoolInfo>
  /**
   * Takes a pooled sandbox when the request matches one, else creates one cold. A create from a
   * snapshot takes one of the snapshot's template and restores it to the snapshot.
   */
  create(input: CreateSandboxInput, options?: CallOptions, from?: { snapshotId?: string }): Promise<CreatedSandboxInfo>
  /** The sandbox service with `create` going through the pools first. */
  wrap(service: SandboxService): SandboxService
  /**
   * Stops the timers and refills, and destroys every pooled sandbox, ready or still starting: they
   * hold nothing of a user, and one left behind would run until the next start's adoption.
   */
  close(): Promise<void>
}

/**
 * Starts the pools saved in the database. Run it after adoption: pooled sandboxes are not in the
 * catalog, so a restart's adoption destroys those a crash left as orphans (a clean close destroys
 * them itself) and the pools start afresh. That is simpler than adopting them, and just as
 * correct: a pooled sandbox holds nothing of a user.
 */
export function createWarmPools(options: WarmPoolsOptions): WarmPools {
  const { agent, catalog, sandboxes, logger, shutdownSignal } = options
  const idleMs = options.idleMs ?? 5 * 60_000
  const store = createPoolStore(options.db)
  const pools = new Map<string, WarmPool>()
  /** Templates whose pool is a default one, not stored. */
  const defaultTemplates = new Set<string>()
  /** Default pools waiting for the look at the agent's templates. */
  const pendingDefaults = new Set<string>()
  const stats = new Map<string, { hits: number; misses: number; handed: Set<string> }>()
  const waiters = new Set<() => void>()
  let closed = false
  const log = logger.child({ component: 'pools' })

  const statsOf = (template: string) => {
    let s = stats.get(template)
    if (!s) stats.set(template, (s = { hits: 0, misses: 0, handed: new Set() }))
    return s
  }
  const inUse = (template: string): number => {
    const handed = statsOf(template).handed
    for (const id of handed) if (!catalog.get(id)) handed.delete(id)
    return handed.size
  }
  const infoOf = (pool: WarmPool): PoolInfo => {
    const { ready, starting } = pool.counts()
    const { hits, misses } = statsOf(pool.template)
    return { ...pool.config(), ready, starting, inUse: inUse(pool.template), hits, misses, ...(defaultTemplates.has(pool.template) ? { default: true } : {}) }
  }
  const wakeAll = (): void => {
    for (const wake of [...waiters]) wake()
  }
  const metrics = createPoolMetrics(options.metrics.registry, () => [...pools.values()].map(infoOf))

  const open = (config: PoolConfig): WarmPool => {
    const pool = createWarmPool({
      config,
      agent,
      logger: log,
      pidsMax: defaultPidsMax,
      diskMiB: sandboxes.defaultDiskMiB,
      network: agentNetworkOf(sandboxes.defaultNetwork),
      shutdownSignal,
      onReady: (latencyMs) => metrics.refillSeconds.observe({ template: config.template }, latencyMs / 1000),
      onChange: wakeAll,
    })
    pools.set(config.template, pool)
    pool.refill()
    return pool
  }
  for (const config of store.list()) open(config)

  /** Opens the default pools of templates that have no stored pool and are built; never throws. */
  const keepDefaults = async (defaults: readonly PoolConfig[]): Promise<void> => {
    const wanted = defaults.filter((d) => !pools.has(d.template) && !pendingDefaults.has(d.template))
    if (wanted.length === 0 || closed) return
    for (const d of wanted) pendingDefaults.add(d.template)
    let built: Set<string> | undefined
    try {
      built = new Set((await agent.templates({ signal: shutdownSignal })).map((t) => t.name))
    } catch (err) {
      if (!shutdownSignal.aborted) log.warn({ err, templates: wanted.map((d) => d.template) }, 'default pools not kept: could not list the templates')
    }
    for (const d of wanted) {
      // Set or removed through the API meanwhile: that stands.
      if (!pendingDefaults.delete(d.template) || pools.has(d.template) || !built || closed || shutdownSignal.aborted) continue
      if (!built.has(d.template)) {
        log.warn({ template: d.template, built: [...built].sort() }, 'default pool skipped: the template is not built on this host')
        continue
      }
      defaultTemplates.add(d.template)
      open(d)
      log.info(d, 'default pool kept')
    }
    wakeAll()
  }

  const tick = setInterval(() => {
    void (async () => {
      if (pools.size === 0) return
      const onHost = new Map((await agent.list({ signal: shutdownSignal })).map((s) => [s.id, s]))
      for (const pool of pools.values()) {
        await pool.check(onHost)
        await pool.reap(idleMs)
      }
    })().catch((err: unknown) => {
      if (!shutdownSignal.aborted) log.error({ err }, 'pool health check failed')
    })
  }, options.checkIntervalMs ?? 10_000)
  tick.unref()

  /** Counts a hand-over of `pool` that took `startedAt` on, as a hit. */
  const recordHit = (pool: WarmPool, id: string, startedAt: number): void => {
    const s = statsOf(pool.template)
    s.hits++
    s.handed.add(id)
    metrics.hits.inc({ template: pool.template })
    options.metrics.createSeconds.observe((performance.now() - startedAt) / 1000)
  }
  /** Counts a create that matched `pool` and found no sandbox to take, and grows the pool. */
  const recordMiss = (pool: WarmPool): void => {
    statsOf(pool.template).misses++
    metrics.misses.inc({ template: pool.template })
    pool.noteMiss()
  }

  /**
   * Restores of pooled sandboxes under way, by pool. The pool refills once the last one ends: a
   * start begun after the first of a fork's restores would take the CPU (runc's fork, the layer)
   * from the other restores of the same fork.
   */
  const restoring = new Map<WarmPool, number>()

  /**
   * A create from a snapshot: a ready sandbox of the snapshot's template's pool, of the config the
   * create asks for, is restored to the snapshot and handed over; else (or when that restore
   * fails) the sandbox starts cold. Concurrent creates (a fork of N) each take one while any is ready.
   */
  const createFromSnapshot = async (input: CreateSandboxInput, network: SandboxNetwork, snapshotId: string, callOptions: CallOptions): Promise<CreatedSandboxInfo> => {
    const pool = agent.snapshots?.restore ? pools.get(input.template) : undefined
    const shape = pool?.pooledConfig()
    if (pool && shape && matchesPoolFromSnapshot(input, network, shape) && (await restorableFromPool(agent, snapshotId, pool.template, callOptions))) {
      const startedAt = performance.now()
      // Golden or not, and of whichever version: the restore replaces its root whole.
      const taken = pool.take()
      if (taken) {
        restoring.set(pool, (restoring.get(pool) ?? 0) + 1)
        try {
          const info = await restoreHandedOver({ agent, sandboxes, logger: log }, taken, input, network, snapshotId, callOptions)
          recordHit(pool, taken.id, startedAt)
          return { ...info, source: 'pool' }
        } catch (err) {
          log.warn({ sandboxId: taken.id, snapshotId, err }, 'a pooled sandbox could not be restored to a snapshot; destroyed it, starting one cold')
        } finally {
          const left = restoring.get(pool)! - 1
          if (left > 0) restoring.set(pool, left)
          else {
            restoring.delete(pool)
            pool.refill()
          }
        }
      }
      recordMiss(pool)
    }
    const created = await sandboxes.create(input, callOptions, { snapshotId })
    return pool ? { ...created, source: 'cold' } : created
  }

  const create: WarmPools['create'] = async (input, callOptions = {}, from = {}) => {
    // Checked before anything is taken: a bad policy is a 400 and leaves the pool as it is.
    const network = sandboxes.networkOf(input)
    if (from.snapshotId) return createFromSnapshot(input, network, from.snapshotId, callOptions)
    const pool = pools.get(input.template)
    const shape = pool?.pooledConfig()
    // Before its first sandbox started, the pool's config is unknown: a request without env counts.
    const matches = pool && (shape ? matchesPool(input, network, shape) : network !== 'none' && (!input.env || Object.keys(input.env).length === 0))
    if (pool && matches) {
      const startedAt = performance.now()
      // A golden template may have moved on (promote, rollback) since its pooled sandboxes started:
      // those of another version are not what a create of the template asks for.
      let current: ((sandbox: PooledSandbox) => boolean) | undefined
      if (pool.holdsGolden()) {
        const now = (await agent.templates(callOptions)).find((t) => t.name === pool.template)
        current = (sandbox) => sandbox.golden?.version === now?.version && sandbox.golden?.snapshotId === now?.snapshotId
      }
      const taken = pool.take(current)
      if (taken) {
        try {
          const info = await sandboxes.handOver(taken, input, network, callOptions)
          recordHit(pool, taken.id, startedAt)
          return { ...info, source: 'pool', ...(taken.golden ? { golden: taken.golden } : {}) }
        } catch (err) {
          // Its policy could not be set: it never reaches the user, and a cold create stands in.
          log.warn({ sandboxId: taken.id, err }, 'a pooled sandbox could not be handed over; starting one cold')
          void agent.destroy(taken.id, { signal: shutdownSignal }).catch(() => undefined)
        } finally {
          pool.refill()
        }
      }
      recordMiss(pool)
    }
    const created = await sandboxes.create(input, callOptions, from)
    // Without a pool for the template a create is cold by definition; the field is then left out,
    // so that a create's answer stays equal to GET of the same sandbox for clients that compare them.
    return pool ? { ...created, source: 'cold' } : created
  }

  return {
    list: () => [...pools.keys()].sort().map((template) => infoOf(pools.get(template)!)),

    async set(template, size, callOptions = {}) {
      if (size.min > size.max) throw new SandstormError('invalid_argument', `pool size: expected min ≤ max, got min ${size.min} and max ${size.max}`)
      const templates = await agent.templates(callOptions)
      if (!templates.some((t) => t.name === template)) {
        throw new SandstormError('not_found', `unknown template "${template}": expected one of ${templates.map((t) => t.name).join(', ') || '(none built)'}`)
      }
      const config = { template, ...size }
      store.put(config)
      defaultTemplates.delete(template)
      pendingDefaults.delete(template)
      const pool = pools.get(template)
      if (pool) pool.setConfig(config)
      log.info(config, 'pool set')
      return infoOf(pool ?? open(config))
    },

    async remove(template) {
      const pool = pools.get(template)
      if (!pool && pendingDefaults.delete(template)) {
        log.info({ template }, 'default pool deleted before it opened')
        return wakeAll()
      }
      if (!pool) throw new SandstormError('not_found', `no pool for template "${template}": expected one of ${[...pools.keys()].join(', ') || '(no pools)'}`)
      pools.delete(template)
      store.delete(template)
      const wasDefault = defaultTemplates.delete(template)
      log.info({ template, default: wasDefault }, wasDefault ? 'default pool deleted until the next start' : 'pool deleted')
      await pool.drain()
    },

    keepDefaults(defaults) {
      keepDefaults(defaults).catch((err: unknown) => log.error({ err }, 'default pools not kept'))
    },

    waitReady(template, count, callOptions = {}) {
      const signal = linkSignal(callOptions) ?? shutdownSignal
      return new Promise<PoolInfo>((resolve, reject) => {
        const finish = (settle: () => void): void => {
          waiters.delete(wake)
          signal.removeEventListener('abort', onAbort)
          settle()
        }
        const wake = (): void => {
          const pool = pools.get(template)
          // A default pool is known before it opens: wait for it rather than answer not_found.
          if (!pool && pendingDefaults.has(template)) return
          if (!pool) return finish(() => reject(new SandstormError('not_found', `no pool for template "${template}"`)))
          if (pool.counts().ready >= count) finish(() => resolve(infoOf(pool)))
        }
        const onAbort = (): void =>
          finish(() => {
            try {
              throwIfAborted(signal)
            } catch (err) {
              reject(err)
            }
          })
        if (signal.aborted) return onAbort()
        waiters.add(wake)
        signal.addEventListener('abort', onAbort, { once: true })
        wake()
      })
    },

    create,

    wrap: (service) => ({ ...service, create }),

    async close() {
      closed = true
      clearInterval(tick)
      waiters.clear()
      pendingDefaults.clear()
      await Promise.all([...pools.values()].map((pool) => pool.drain('server closing')))
    },
  }
}
