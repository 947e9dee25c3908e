import type { z } from 'zod'
import type { AgentApi, AgentSandbox } from '../agent/index.js'
import { agentNetworkOf, checkEgress, checkNetwork, createKeyedQueue, newId, SandstormError } from '../shared/index.js'
import type { CallOptions, createSandboxBody, DefaultEgress, Logger, NetworkUpdateRequest, SandboxInfo, SandboxMetrics, SandboxNetwork, SandboxState } from '../shared/index.js'
import { toSandboxInfo } from './catalog.js'
import type { SandboxCatalog, SandboxRecord } from './catalog.js'
import { createExpiryTimers } from './expiry-timers.js'
import type { SandboxLifecycle } from './sandbox-lifecycle.js'
import { createSandboxPauses, type SandboxPauses } from './sandbox-pause.js'
import { withGoldenSource, type GoldenOrigin, type GoldenSource } from './golden-source.js'
import type { ServerMetrics } from './metrics.js'
import { createUsageSampler } from './sandbox-usage.js'

/** A validated create request. */
export type CreateSandboxInput = z.output<typeof createSandboxBody>

/** Which sandboxes to list: all given labels must match. */
export interface SandboxFilter {
  state?: SandboxState
  labels?: Record<string, string>
}

/** The catalog and the agent kept in step: every change to a sandbox's life goes through here. */
export interface SandboxService extends Pick<SandboxPauses, 'pause' | 'resume' | 'wake'> {
  /** Creates a sandbox; with `from.snapshotId`, its filesystem starts at that snapshot. */
  create(input: CreateSandboxInput, options?: CallOptions, from?: { snapshotId?: string }): Promise<SandboxInfo>
  get(id: string): SandboxInfo
  list(filter?: SandboxFilter): SandboxInfo[]
  /** Sets `expiresAt` to now + timeoutMs (E2B semantics: it may also shorten the life). */
  setTimeout(id: string, timeoutMs: number): SandboxInfo
  destroy(id: string, options?: CallOptions, reason?: string): Promise<void>
  /**
   * Marks a sandbox for removal (its expiry set to now, killed at it) and destroys it under the
   * server's lifetime, not a request's; throws at once what `destroy` would refuse (`not_found`,
   * `failed_precondition`). The returned promise settles when the destroy does and never rejects:
   * a destroy cut short (the server closing, an agent away) is taken up by the expiry timers,
   * here or after a restart, so the sandbox is not left behind.
   */
  markForRemoval(id: string): Promise<void>
  /** Sets what the sandbox does at its timeout (kept in the catalog, so a restart keeps it). */
  setLifecycle(id: string, lifecycle: SandboxLifecycle): void
  /** The sandbox's record, if it exists and has started; throws `not_found` or `failed_precondition`. */
  requireStarted(id: string): SandboxRecord
  /**
   * Whether a destroy of it is under way: its processes and connections are going while it is
   * still in the catalog (envd then says it does not run, so E2B's SDKs report a kill as one).
   */
  destroying(id: string): boolean
  /** Its usage now: CPU since the previous sample, memory, processes, disk against its quota. */
  usage(id: string, options?: CallOptions): Promise<SandboxMetrics>
  /** Arms the expiry timer of every sandbox in the catalog (after adoption, on start). */
  armAll(): void
  /** Disarms all timers; sandboxes keep running. */
  close(): void
  /**
   * Records a running sandbox started ahead of demand (a warm pool's, with the default network) as
   * created now by `input`: its labels, timeout and network (a policy other than the default is
   * set on the agent first). With `restoredTo`, the agent has restored it to that snapshot with
   * the env of `input`, and the record keeps that env, as a create from the snapshot does.
   */
  handOver(sandbox: HandOverSandbox, input: CreateSandboxInput, network: SandboxNetwork, options?: CallOptions, restoredTo?: string): Promise<SandboxInfo>
  /**
   * Replaces a running sandbox's egress policy, whole and at once (omitted lists are cleared, as
   * E2B's updateNetwork does). A bad policy is a 400 and changes nothing.
   */
  updateNetwork(id: string, update: NetworkUpdateRequest, options?: CallOptions): Promise<SandboxInfo>
  /** The network a create asks for, checked, the server's default egress filled in; a 400 naming the field when it is malformed. */
  networkOf(input: CreateSandboxInput): SandboxNetwork
  /** What a create that names no network gets (warm pools start their sandboxes with it). */
  readonly defaultNetwork: SandboxNetwork
  /** The disk quota of a create that names none and whose template has none. */
  readonly defaultDiskMiB: number
}

/** A running sandbox the catalog does not know yet, with the config it was started with. */
export interface HandOverSandbox {
  id: string
  template: string
  runtime: string
  memoryMiB: number
  cpus: number
  pidsMax: number
  diskMiB: number
}

/** Options of createSandboxService. */
export interface SandboxServiceOptions {
  agent: AgentApi
  catalog: SandboxCatalog
  metrics: ServerMetrics
  logger: Logger
  /** Sandbox lifetime when a create gives none. */
  defaultTimeoutMs: number
  /** Fires when the server shuts down; background work (expiry) runs under it. */
  shutdownSignal: AbortSignal
  /** Wait before trying again to destroy an expired sandbox whose destroy failed. @default 30_000 */
  expiryRetryMs?: number
  /** Runtime of a create that names none. @default the agent's choice (its default, or a golden machine template's own) */
  defaultRuntime?: string
  /** Egress of a create that names no network: the public internet, or nothing. @default 'all' */
  defaultEgress?: DefaultEgress
  /** Disk quota of a create that names none, when its template has no default. @default defaultDiskMiB (2048) */
  defaultDiskMiB?: number
  /** A paused machine (qemu) is written to disk and its VM stopped after this long paused. @default never */
  hibernateAfterMs?: number
}

/** The disk quota of a sandbox when neither the create, its template nor the server names one. */
export const defaultDiskMiB = 2048

/** Pids a sandbox may hold when a create gives no limit. */
export const defaultPidsMax = 1024

/** Creates the service; it arms no timers until `armAll`. */
export function createSandboxService(options: SandboxServiceOptions): SandboxService {
  const { agent, catalog, metrics, logger, shutdownSignal } = options
  const expiryRetryMs = options.expiryRetryMs ?? 30_000
  const destroying = new Map<string, Promise<void>>()
  const defaultEgress = options.defaultEgress ?? 'all'
  const networkOf = (input: CreateSandboxInput): SandboxNetwork => checkNetwork(input.network, defaultEgress)
  const defaultNetwork = checkNetwork(undefined, defaultEgress)
  const serverDiskMiB = options.defaultDiskMiB ?? defaultDiskMiB
  const sampler = createUsageSampler(agent)

  function requireStarted(id: string): SandboxRecord {
    const record = find(id)
    if (record.state === 'starting') {
      throw new SandstormError('failed_precondition', `sandbox "${id}" is still starting: expected a started sandbox`)
    }
    return record
  }
  const networkUpdates = createKeyedQueue<string>()

  const timers = createExpiryTimers({
    onExpire(id) {
      const record = catalog.get(id)
      if (!record) return
      // Extended since the timer was armed: wait for the new time.
      if (record.expiresAtMs > Date.now()) return timers.arm(id, record.expiresAtMs)
      // onTimeout 'pause': paused now, and removed when its time as a paused sandbox is up.
      if (record.state === 'running' && record.lifecycle?.onTimeout === 'pause') {
        pauses.pause(id, { signal: shutdownSignal }, 'timeout').catch((err: unknown) => {
          if (shutdownSignal.aborted) return
          logger.error({ sandboxId: id, err, retryMs: expiryRetryMs }, 'could not pause a sandbox at its timeout; will try again')
          timers.arm(id, Date.now() + expiryRetryMs)
        })
        return
      }
      destroy(id, { signal: shutdownSignal }, 'expired').catch((err: unknown) => {
        if (shutdownSignal.aborted) return
        logger.error({ sandboxId: id, err, retryMs: expiryRetryMs }, 'could not destroy an expired sandbox; will try again')
        timers.arm(id, Date.now() + expiryRetryMs)
      })
    },
  })

  const pauses = createSandboxPauses({
    agent,
    catalog,
    logger,
    arm: (id, at) => timers.arm(id, at),
    defaultTimeoutMs: options.defaultTimeoutMs,
    hibernateAfterMs: options.hibernateAfterMs,
    shutdownSignal,
  })

  const find = (id: string): SandboxRecord => {
    const record = catalog.get(id)
    if (!record) throw new SandstormError('not_found', `sandbox "${id}" not found`)
    return record
  }

  const destroy = (id: string, callOptions: CallOptions = {}, reason = 'deleted'): Promise<void> => {
    const record = find(id)
    if (record.state === 'starting') {
      throw new SandstormError('failed_precondition', `sandbox "${id}" is still starting: expected a started sandbox`)
    }
    // Two deletes (or a delete and the expiry) share one destroy.
    const pending = destroying.get(id)
    if (pending) return pending
    const done = (async () => {
      timers.disarm(id)
      try {
        await agent.destroy(id, callOptions)
      } catch (err) {
        // Gone already is what we wanted.
        if (!(err instanceof SandstormError && err.code === 'not_found')) {
          if (reason !== 'expired') timers.arm(id, record.expiresAtMs)
          throw err
        }
      }
      catalog.delete(id)
      sampler.forget(id)
      logger.info({ sandboxId: id, reason }, 'sandbox destroyed')
      // The machine saves of its pauses written to disk stood under it; newest first, as each stands on the one before.
      for (const saved of [...(record.lifecycle?.machineSaves ?? [])].reverse()) {
        await agent.snapshots?.remove(saved).catch((err: unknown) => logger.warn({ sandboxId: id, snapshotId: saved, err }, 'could not remove the machine save of a destroyed sandbox'))
      }
    })().finally(() => destroying.delete(id))
    destroying.set(id, done)
    return done
  }

  return {
    async create(input, callOptions = {}, from = {}) {
      const startedAt = performance.now()
      const network = networkOf(input)
      const templates = await agent.templates(callOptions)
      const template = templates.find((t) => t.name === input.template)
      if (!template) {
        const names = templates.map((t) => t.name).join(', ') || '(none built)'
        throw new SandstormError('not_found', `unknown template "${input.template}": expected one of ${names}`)
      }
      const id = newId('sb')
      const timeoutMs = input.timeoutMs ?? options.defaultTimeoutMs
      const record: SandboxRecord = {
        id,
        template: template.name,
        runtime: '',
        state: 'starting',
        memoryMiB: input.memoryMiB ?? template.defaults.memoryMiB,
        cpus: input.cpus ?? template.defaults.cpus,
        pidsMax: input.pidsMax ?? defaultPidsMax,
        diskMiB: input.diskMiB ?? template.defaults.diskMiB ?? serverDiskMiB,
        labels: input.labels ?? {},
        env: input.env ?? {},
        network,
        createdAtMs: Date.now(),
        expiresAtMs: Date.now() + timeoutMs,
      }
      catalog.insert(record)
      let sandbox: AgentSandbox
      const runtime = input.runtime ?? options.defaultRuntime
      try {
        sandbox = await agent.create(
          {
            id,
            template: record.template,
            memoryMiB: record.memoryMiB,
            cpus: record.cpus,
            pidsMax: record.pidsMax,
            diskMiB: record.diskMiB,
            env: record.env,
            network: agentNetworkOf(network),
            ...(from.snapshotId ? { snapshotId: from.snapshotId } : {}),
            ...(runtime ? { runtime } : {}),
          },
          callOptions,
        )
      } catch (err) {
        catalog.delete(id)
        logger.warn({ sandboxId: id, template: record.template, err }, 'sandbox create failed; nothing kept')
        throw err
      }
      // The lifetime counts from when the sandbox runs, unless a timeout was set while it started.
      const untouched = find(id).expiresAtMs === record.expiresAtMs
      const expiresAtMs = untouched ? Date.now() + timeoutMs : undefined
      catalog.update(id, { runtime: sandbox.runtime, state: stateOf(sandbox), expiresAtMs })
      const created = find(id)
      timers.arm(id, created.expiresAtMs)
      metrics.createSeconds.observe((performance.now() - startedAt) / 1000)
      logger.info({ sandboxId: id, template: created.template, runtime: created.runtime }, 'sandbox created')
      const answer = withGoldenSource(toSandboxInfo(created), template, input, from)
      if (!sandbox.start) return answer
      // An agent that knows how a golden create started (a machine clone, or a cold boot and why) has the last word.
      const { golden, ...rest } = answer
      const started: SandboxInfo & { source: GoldenSource; golden?: GoldenOrigin; sourceReason?: string } = {
        ...rest,
        source: sandbox.start,
        ...(sandbox.start === 'golden' && golden ? { golden } : {}),
        ...(sandbox.startReason ? { sourceReason: sandbox.startReason } : {}),
      }
      return started
    },

    get(id) {
      return toSandboxInfo(find(id))
    },

    list(filter = {}) {
      const labels = Object.entries(filter.labels ?? {})
      return catalog
        .list(filter.state)
        .filter((r) => labels.every(([k, v]) => r.labels[k] === v))
        .map(toSandboxInfo)
    },

    setTimeout(id, timeoutMs) {
      find(id)
      const expiresAtMs = Date.now() + timeoutMs
      catalog.update(id, { expiresAtMs })
      const record = find(id)
      // A starting sandbox is armed when it runs, from the row written here.
      if (record.state !== 'starting') timers.arm(id, expiresAtMs)
      logger.info({ sandboxId: id, expiresAt: new Date(expiresAtMs).toISOString() }, 'sandbox timeout set')
      return toSandboxInfo(record)
    },

    destroy,

    markForRemoval(id) {
      const record = requireStarted(id)
      // A sandbox that pauses at its timeout would pause at this one: it is killed instead.
      const lifecycle = record.lifecycle && { ...record.lifecycle, onTimeout: 'kill' as const, autoResume: false }
      catalog.update(id, { expiresAtMs: Date.now(), ...(lifecycle ? { lifecycle } : {}) })
      logger.info({ sandboxId: id }, 'sandbox marked for removal')
      // No signal: neither the request's end nor shutdown cuts it (close() waits for it, the caller tracks it).
      return destroy(id, {}, 'deleted').catch((err: unknown) => {
        logger.warn({ sandboxId: id, err }, 'could not destroy a sandbox marked for removal; its expiry will try again')
      })
    },

    pause: pauses.pause,
    resume: pauses.resume,
    wake: pauses.wake,

    setLifecycle(id, lifecycle) {
      if (!catalog.update(id, { lifecycle })) throw new SandstormError('not_found', `sandbox "${id}" not found`)
    },

    usage: (id, callOptions) => sampler.sample(requireStarted(id), callOptions),

    requireStarted,
    destroying: (id) => destroying.has(id),

    armAll() {
      for (const record of catalog.list()) if (record.state !== 'starting') timers.arm(record.id, record.expiresAtMs)
      pauses.scheduleAll()
    },

    close() {
      timers.clear()
      pauses.close()
    },

    networkOf,
    defaultNetwork,
    defaultDiskMiB: serverDiskMiB,

    updateNetwork(id, update, callOptions) {
      // One update at a time per sandbox, so that the catalog ends with the policy the agent holds.
      return networkUpdates.run(id, async () => {
        const record = find(id)
        if (record.state === 'starting') throw new SandstormError('failed_precondition', `sandbox "${id}" is still starting: expected a started sandbox`)
        if (record.network === 'none') {
          throw new SandstormError('failed_precondition', `sandbox "${id}" was created with network "none": it has no network device to set a policy on (create it with a network)`)
        }
        const egress = checkEgress(update)
        await agent.updateNetwork(id, egress, callOptions)
        catalog.update(id, { network: { ...record.network, ...egress } })
        logger.info({ sandboxId: id, allowOut: egress.allowOut.length, denyOut: egress.denyOut.length }, 'sandbox network policy replaced')
        return toSandboxInfo(find(id))
      })
    },

    async handOver(sandbox, input, network, callOptions, restoredTo) {
      const { id, template, runtime, memoryMiB, cpus, pidsMax, diskMiB } = sandbox
      // Pooled sandboxes run the default egress; another policy is set before anyone can use it.
      if (network !== 'none' && defaultNetwork !== 'none' && !sameEgress(network, defaultNetwork)) {
        await agent.updateNetwork(id, { allowOut: network.allowOut, denyOut: network.denyOut }, callOptions)
      }
      const now = Date.now()
      const record: SandboxRecord = { id, template, runtime, state: 'running', memoryMiB, cpus, pidsMax, diskMiB, labels: input.labels ?? {}, env: restoredTo ? (input.env ?? {}) : {}, network, createdAtMs: now, expiresAtMs: now + (input.timeoutMs ?? options.defaultTimeoutMs) }
      catalog.insert(record)
      timers.arm(id, record.expiresAtMs)
      if (restoredTo) logger.info({ sandboxId: id, template, snapshotId: restoredTo }, 'sandbox created from a warm pool and restored to a snapshot')
      else logger.info({ sandboxId: id, template }, 'sandbox created from a warm pool')
      return toSandboxInfo(record)
    },
  }
}

/** Whether two networks have the same egress policy (the order of entries aside). */
function sameEgress(a: Exclude<SandboxNetwork, 'none'>, b: Exclude<SandboxNetwork, 'none'>): boolean {
  const same = (x: string[], y: string[]) => x.length === y.length && [...x].sort().join() === [...y].sort().join()
  return same(a.allowOut, b.allowOut) && same(a.denyOut, b.denyOut)
}

/** The catalog state for what the agent reports. */
export function stateOf(sandbox: AgentSandbox): SandboxState {
  return sandbox.status
}
