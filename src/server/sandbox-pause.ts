/**
 * Pausing and resuming a sandbox, with the catalog kept in step: by hand (E2B's pause and
 * connect), at its timeout (`onTimeout: 'pause'`), and on traffic (`autoResume`). One change at a
 * time per sandbox, so that a burst of requests to a paused sandbox resumes it once.
 *
 * A machine (qemu) paused for `hibernateAfterMs` is written to disk whole (a machine snapshot:
 * memory, devices, disk) and its VM stopped, freeing its RAM; a resume starts it again from that
 * save under the same id. A container (runc) stays frozen in memory.
 */
import type { AgentApi } from '../agent/index.js'
import { agentNetworkOf, createKeyedQueue, SandstormError } from '../shared/index.js'
import type { CallOptions, Logger } from '../shared/index.js'
import type { SandboxCatalog, SandboxRecord } from './catalog.js'
import { killAtTimeout, pausedRetentionMs } from './sandbox-lifecycle.js'

/** Pause and resume of started sandboxes. */
export interface SandboxPauses {
  /** Pauses a running sandbox; it is then kept for `pausedRetentionMs`. `already_exists` when it is paused already. */
  pause(id: string, options?: CallOptions, reason?: string): Promise<void>
  /** Resumes a paused sandbox with `timeoutMs` to live; a running one is left as it is. Resolves false when it was running. */
  resume(id: string, timeoutMs: number, options?: CallOptions, reason?: string): Promise<boolean>
  /**
   * Resumes a paused sandbox whose policy lets traffic wake it, with the lifetime it was created
   * with. Resolves true when the sandbox runs now, false when it stays as it is.
   */
  wake(id: string, options?: CallOptions): Promise<boolean>
  /** Schedules the hibernation of every paused machine (after a restart); none without `hibernateAfterMs`. */
  scheduleAll(): void
  /** Cancels the scheduled hibernations. */
  close(): void
}

/** Options of createSandboxPauses. */
export interface SandboxPausesOptions {
  agent: AgentApi
  catalog: SandboxCatalog
  logger: Logger
  /** Re-arms the sandbox's expiry timer for its new end. */
  arm(id: string, expiresAtMs: number): void
  /** The lifetime of a woken sandbox whose policy names none. */
  defaultTimeoutMs: number
  /** A paused machine is written to disk and its VM stopped after this long. @default never */
  hibernateAfterMs?: number
  /** Runtimes whose sandboxes are machines that can be written to disk whole. @default ['qemu'] */
  machineRuntimes?: string[]
  /** Stops the hibernations in flight. */
  shutdownSignal?: AbortSignal
}

/** Creates the pause control. */
export function createSandboxPauses(options: SandboxPausesOptions): SandboxPauses {
  const { agent, catalog, logger, arm } = options
  const queue = createKeyedQueue<string>()
  /** Runs `work` after every change of this sandbox that came before it. */
  const queued = <T>(id: string, work: () => Promise<T>): Promise<T> => queue.run(id, work)

  const find = (id: string) => {
    const record = catalog.get(id)
    if (!record) throw new SandstormError('not_found', `sandbox "${id}" not found`)
    return record
  }

  const machines = new Set(options.machineRuntimes ?? ['qemu'])
  const hibernations = new Map<string, NodeJS.Timeout>()
  const unschedule = (id: string): void => {
    clearTimeout(hibernations.get(id))
    hibernations.delete(id)
  }
  const schedule = (record: SandboxRecord): void => {
    const afterMs = options.hibernateAfterMs
    if (afterMs === undefined || !machines.has(record.runtime) || record.lifecycle?.hibernatedAs || !agent.snapshots || options.shutdownSignal?.aborted) return
    unschedule(record.id)
    const timer = setTimeout(() => {
      hibernations.delete(record.id)
      hibernate(record.id).catch((err: unknown) => logger.error({ sandboxId: record.id, err }, 'could not write a paused machine to disk; it stays paused in memory'))
    }, afterMs)
    timer.unref()
    hibernations.set(record.id, timer)
  }

  /** Writes a paused machine to disk and stops its VM; the catalog keeps it as paused. */
  const hibernate = (id: string): Promise<void> =>
    queued(id, async () => {
      const record = catalog.get(id)
      if (!record || record.state !== 'paused' || record.lifecycle?.hibernatedAs || !agent.snapshots) return
      const call = { signal: options.shutdownSignal }
      // The save readies the guest (entropy, identity) only on a running machine, so that its
      // clone comes up sound on a new network slot: it runs for the moment of the save.
      await agent.resume(id, call)
      let saved: string
      try {
        saved = (await agent.snapshots.take(id, { label: `hibernation of ${id}` }, call)).id
      } finally {
        await agent.pause(id, call)
      }
      const saves = [...(record.lifecycle?.machineSaves ?? []), saved]
      catalog.update(id, { lifecycle: { ...(record.lifecycle ?? killAtTimeout), hibernatedAs: saved, machineSaves: saves } })
      await agent.destroy(id, call)
      logger.info({ sandboxId: id, snapshotId: saved }, 'paused machine written to disk; its VM stopped')
    })

  const resume = (id: string, timeoutMs: number, call: CallOptions = {}, reason = 'connect'): Promise<boolean> =>
    queued(id, async () => {
      const record = find(id)
      if (record.state === 'running') return false
      if (record.state !== 'paused') throw new SandstormError('failed_precondition', `sandbox "${id}" is ${record.state}: expected a paused sandbox to resume`)
      unschedule(id)
      const hibernatedAs = record.lifecycle?.hibernatedAs
      if (hibernatedAs) {
        // Back from its save under the same id: memory and processes as they were, on a new network slot.
        const { memoryMiB, cpus, pidsMax, diskMiB, env, template, runtime } = record
        await agent.create({ id, template, memoryMiB, cpus, pidsMax, diskMiB, env, network: agentNetworkOf(record.network), snapshotId: hibernatedAs, runtime }, call)
        const { hibernatedAs: _done, ...lifecycle } = record.lifecycle!
        catalog.update(id, { lifecycle })
      } else {
        await agent.resume(id, call)
      }
      const expiresAtMs = Date.now() + timeoutMs
      catalog.update(id, { state: 'running', expiresAtMs })
      arm(id, expiresAtMs)
      logger.info({ sandboxId: id, reason, fromDisk: hibernatedAs !== undefined, expiresAt: new Date(expiresAtMs).toISOString() }, 'sandbox resumed')
      return true
    })

  return {
    pause: (id, call = {}, reason = 'pause') =>
      queued(id, async () => {
        const record = find(id)
        if (record.state === 'paused') throw new SandstormError('already_exists', `sandbox "${id}" is already paused`)
        if (record.state !== 'running') throw new SandstormError('failed_precondition', `sandbox "${id}" is ${record.state}: expected a running sandbox to pause`)
        await agent.pause(id, call)
        const expiresAtMs = Date.now() + pausedRetentionMs
        catalog.update(id, { state: 'paused', expiresAtMs })
        arm(id, expiresAtMs)
        logger.info({ sandboxId: id, reason }, 'sandbox paused')
        schedule(record)
      }),

    resume,

    async wake(id, call) {
      const record = catalog.get(id)
      if (!record) return false
      if (record.state === 'running') return true
      if (record.state !== 'paused' || !record.lifecycle?.autoResume) return false
      await resume(id, record.lifecycle.timeoutMs ?? options.defaultTimeoutMs, call, 'traffic')
      return catalog.get(id)?.state === 'running'
    },

    scheduleAll() {
      for (const record of catalog.list('paused')) schedule(record)
    },

    close() {
      for (const timer of hibernations.values()) clearTimeout(timer)
      hibernations.clear()
    },
  }
}
