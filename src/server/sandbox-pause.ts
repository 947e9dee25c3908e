/**
 * Pausing and resuming a sandbox, with the catalog kept in step: by hand (E2B's pause and
 * connect), at its timeout (`onTimeout: 'pause'`), and on traffic (`autoResume`). One change at a
 * time per sandbox, so that a burst of requests to a paused sandbox resumes it once.
 */
import type { AgentApi } from '../agent/index.js'
import { SandstormError } from '../shared/index.js'
import type { CallOptions, Logger } from '../shared/index.js'
import type { SandboxCatalog } from './catalog.js'
import { pausedRetentionMs } from './sandbox-lifecycle.js'

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
}

/** Creates the pause control. */
export function createSandboxPauses(options: SandboxPausesOptions): SandboxPauses {
  const { agent, catalog, logger, arm } = options
  const queues = new Map<string, Promise<unknown>>()

  /** Runs `work` after every change of this sandbox that came before it. */
  const queued = <T>(id: string, work: () => Promise<T>): Promise<T> => {
    const run = (queues.get(id) ?? Promise.resolve()).then(work)
    const settled = run.catch(() => undefined)
    queues.set(id, settled)
    void settled.then(() => queues.get(id) === settled && queues.delete(id))
    return run
  }

  const find = (id: string) => {
    const record = catalog.get(id)
    if (!record) throw new SandstormError('not_found', `sandbox "${id}" not found`)
    return record
  }

  const resume = (id: string, timeoutMs: number, call: CallOptions = {}, reason = 'connect'): Promise<boolean> =>
    queued(id, async () => {
      const record = find(id)
      if (record.state === 'running') return false
      if (record.state !== 'paused') throw new SandstormError('failed_precondition', `sandbox "${id}" is ${record.state}: expected a paused sandbox to resume`)
      await agent.resume(id, call)
      const expiresAtMs = Date.now() + timeoutMs
      catalog.update(id, { state: 'running', expiresAtMs })
      arm(id, expiresAtMs)
      logger.info({ sandboxId: id, reason, expiresAt: new Date(expiresAtMs).toISOString() }, 'sandbox resumed')
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
  }
}
