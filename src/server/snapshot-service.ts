import type { AgentApi, AgentSnapshotApi } from '../agent/index.js'
import { agentNetworkOf, SandstormError } from '../shared/index.js'
import type { CallOptions, forkBody, Logger, SandboxInfo, SnapshotInfo } from '../shared/index.js'
import type { AgentSnapshot } from '../agent/index.js'
import type { z } from 'zod'
import type { SandboxCatalog } from './catalog.js'
import type { SandboxService } from './sandbox-service.js'
import { createSnapshotCatalog, toSnapshotInfo, type SnapshotCatalog } from './snapshot-catalog.js'
import type { CatalogDb } from './db.js'

/** Snapshots, forks and restores, with the catalog and the agent kept in step. */
export interface SnapshotService {
  take(sandboxId: string, label: string | undefined, options?: CallOptions): Promise<SnapshotInfo>
  get(id: string): SnapshotInfo
  list(): SnapshotInfo[]
  remove(id: string, options?: CallOptions): Promise<void>
  /** Starts `count` sandboxes at the snapshot, with its config and env. */
  fork(id: string, req: z.output<typeof forkBody>, options?: CallOptions): Promise<SandboxInfo[]>
  /** Replaces a sandbox by a fresh one (same id, same config) at the snapshot. */
  restore(sandboxId: string, snapshotId: string, options?: CallOptions): Promise<SandboxInfo>
  /**
   * Deletes a snapshot now, or, while a sandbox or a snapshot still stands on it, retires it: it is
   * gone for every caller at once and its layer is removed once nothing stands on it.
   */
  retire(id: string, options?: CallOptions): Promise<'removed' | 'retired'>
  /** The snapshot named by id, or else the newest one labelled so, with its env (for a create from it). */
  source(idOrLabel: string): AgentSnapshot | undefined
  /** Removes the retired snapshots that nothing stands on any more. */
  sweep(): Promise<void>
}

/** Options of createSnapshotService. */
export interface SnapshotServiceOptions {
  agent: AgentApi
  db: CatalogDb
  catalog: SandboxCatalog
  sandboxes: SandboxService
  logger: Logger
  /** Stops the sweep of retired snapshots. */
  shutdownSignal?: AbortSignal
  /** How often retired snapshots are looked at. @default 30_000 */
  sweepMs?: number
}

/** Creates the service and brings the snapshots table in step with what the agent holds. */
export async function createSnapshotService(options: SnapshotServiceOptions): Promise<SnapshotService> {
  const { agent, sandboxes, catalog, logger } = options
  const snapshots: SnapshotCatalog = createSnapshotCatalog(options.db)
  const api = (): AgentSnapshotApi => {
    if (!agent.snapshots) throw new SandstormError('failed_precondition', 'this agent cannot take snapshots: expected an agent with a layer store')
    return agent.snapshots
  }
  if (agent.snapshots) {
    // A paused machine's save on disk is the sandbox's own, no snapshot of the user's.
    const machineSaves = new Set(catalog.list().flatMap((r) => r.lifecycle?.machineSaves ?? []))
    const held = (await agent.snapshots.list()).filter((s) => !machineSaves.has(s.id))
    const ids = new Set(held.map((s) => s.id))
    // A snapshot the server recorded keeps what the server set when it was taken (take, below).
    for (const s of held) {
      const known = snapshots.get(s.id)
      snapshots.insert(known ? { ...s, sandboxId: known.sandboxId, label: known.label, template: known.template, createdAt: known.createdAt } : s)
    }
    for (const s of snapshots.list()) if (!ids.has(s.id)) snapshots.delete(s.id)
  }
  const find = (id: string) => {
    const found = snapshots.get(id)
    if (!found || snapshots.retired().has(id)) throw new SandstormError('not_found', `snapshot "${id}" not found`)
    return found
  }
  const live = () => {
    const retired = snapshots.retired()
    return snapshots.list().filter((s) => !retired.has(s.id))
  }

  let sweeping: Promise<void> | undefined
  const sweep = (): Promise<void> =>
    (sweeping ??= (async () => {
      for (const id of snapshots.retired()) {
        try {
          await api().remove(id, { signal: options.shutdownSignal })
          snapshots.delete(id)
          logger.info({ snapshotId: id }, 'retired snapshot removed')
        } catch (err) {
          const e = SandstormError.from(err)
          if (e.code === 'not_found') snapshots.delete(id)
          // Something still stands on it: the next sweep tries again.
          else if (e.code !== 'failed_precondition') logger.warn({ snapshotId: id, err: e }, 'could not remove a retired snapshot')
        }
      }
    })().finally(() => (sweeping = undefined)))
  const sweepTimer = setInterval(() => {
    if (snapshots.retired().size > 0 && agent.snapshots) void sweep()
  }, options.sweepMs ?? 30_000)
  sweepTimer.unref()
  options.shutdownSignal?.addEventListener('abort', () => clearInterval(sweepTimer), { once: true })

  return {
    async take(sandboxId, label, call) {
      const record = sandboxes.requireStarted(sandboxId)
      const taken = await api().take(sandboxId, { label }, call)
      // What the server asked for is the server's to say: an agent that answers with another
      // sandbox or label (one a fork by label would find first) is refused, and the template and
      // time are the server's own, not the agent's (a time to come would rank it newest).
      if (taken.sandboxId !== sandboxId || taken.label !== (label ?? '')) {
        await api().remove(taken.id).catch(() => undefined)
        throw new SandstormError('internal', `the agent answered a snapshot of sandbox "${sandboxId}" as one of ${JSON.stringify(taken.sandboxId)} labelled ${JSON.stringify(taken.label)}; refused`, { expose: false })
      }
      const snapshot = { ...taken, template: record.template, createdAt: new Date().toISOString() }
      snapshots.insert(snapshot)
      return toSnapshotInfo(snapshot)
    },
    get: (id) => toSnapshotInfo(find(id)),
    list: () => live().map(toSnapshotInfo),
    async retire(id, call) {
      find(id)
      try {
        await api().remove(id, call)
        snapshots.delete(id)
        return 'removed'
      } catch (err) {
        if (!(err instanceof SandstormError && err.code === 'failed_precondition')) throw err
        snapshots.retire(id)
        logger.info({ snapshotId: id }, 'snapshot retired: removed once nothing stands on it')
        return 'retired'
      }
    },
    source(idOrLabel) {
      const all = live()
      return all.find((s) => s.id === idOrLabel) ?? all.filter((s) => s.label !== '' && s.label === idOrLabel).at(-1)
    },
    sweep,
    async remove(id, call) {
      find(id)
      await api().remove(id, call)
      snapshots.delete(id)
    },
    async fork(id, req, call) {
      const snap = find(id)
      const input = {
        template: snap.template,
        memoryMiB: snap.memoryMiB,
        cpus: snap.cpus,
        pidsMax: snap.pidsMax,
        // A snapshot taken before quotas leaves its forks the template's or the server's.
        ...(snap.diskMiB > 0 ? { diskMiB: snap.diskMiB } : {}),
        env: snap.env,
        timeoutMs: req.timeoutMs,
        labels: req.labels,
        network: req.network,
      }
      const made = await Promise.allSettled(Array.from({ length: req.count }, () => sandboxes.create(input, call, { snapshotId: id })))
      const failed = made.find((m) => m.status === 'rejected')
      if (failed) {
        // All or nothing: a fork that could not start them all leaves none.
        await Promise.allSettled(made.flatMap((m) => (m.status === 'fulfilled' ? [sandboxes.destroy(m.value.id)] : [])))
        throw SandstormError.from(failed.reason)
      }
      logger.info({ snapshotId: id, count: req.count }, 'snapshot forked')
      return made.map((m) => (m as PromiseFulfilledResult<SandboxInfo>).value)
    },
    async restore(sandboxId, snapshotId, call) {
      const record = sandboxes.requireStarted(sandboxId)
      const snap = find(snapshotId)
      const restore = agent.snapshots?.restore
      if (restore) {
        // The agent starts the new instance first and removes the old one after: the old one still
        // runs if this fails, so the record stays as it is.
        const config = { memoryMiB: record.memoryMiB, cpus: record.cpus, pidsMax: record.pidsMax, diskMiB: record.diskMiB, env: record.env }
        await restore.call(agent.snapshots, sandboxId, { snapshotId, ...config }, call)
        catalog.update(sandboxId, { state: 'running' })
        logger.info({ sandboxId, snapshotId }, 'sandbox restored')
        return sandboxes.get(sandboxId)
      }
      await agent.destroy(sandboxId, call)
      try {
        await agent.create(
          { id: sandboxId, template: snap.template, memoryMiB: record.memoryMiB, cpus: record.cpus, pidsMax: record.pidsMax, diskMiB: record.diskMiB, env: record.env, network: agentNetworkOf(record.network), snapshotId },
          call,
        )
      } catch (err) {
        // The old sandbox is gone and no new one runs: say so rather than keep a record of nothing.
        catalog.delete(sandboxId)
        throw err
      }
      catalog.update(sandboxId, { state: 'running' })
      logger.info({ sandboxId, snapshotId }, 'sandbox restored')
      return sandboxes.get(sandboxId)
    },
  }
}
