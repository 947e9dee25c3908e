/** Keeping the catalog's "running" honest when a sandbox dies on its own (its init OOM-killed, say). */
import type { AgentApi } from '../agent/index.js'
import { SandstormError, type Logger } from '../shared/index.js'
import type { SandboxCatalog } from './catalog.js'

/** Options of watchSandboxStates. */
export interface StateWatchOptions {
  agent: AgentApi
  catalog: SandboxCatalog
  logger: Logger
  /** How often the agent is asked. */
  intervalMs: number
  signal: AbortSignal
}

/**
 * Marks "stopped" a running sandbox that the agent reports stopped in two looks in a row. One
 * look is not enough: a sandbox being restored or started is "created" in runc for a moment.
 * Returns `look`, one look, for callers that do not want to wait for the timer.
 */
export function watchSandboxStates(options: StateWatchOptions): { look(): Promise<void> } {
  const { agent, catalog, logger, signal } = options
  let seenStopped = new Set<string>()
  async function look(): Promise<void> {
    const stopped = new Set((await agent.list({ signal })).filter((s) => s.status === 'stopped').map((s) => s.id))
    const running = new Set(catalog.list('running').map((r) => r.id))
    for (const id of stopped) {
      if (!running.has(id) || !seenStopped.has(id)) continue
      catalog.update(id, { state: 'stopped' })
      logger.warn({ sandboxId: id }, 'sandbox stopped on its own (its init is gone); marked stopped')
    }
    seenStopped = stopped
  }
  let busy = false
  const timer = setInterval(() => {
    if (busy || signal.aborted) return
    busy = true
    look()
      .catch((err: unknown) => logger.warn({ err: SandstormError.from(err) }, 'could not look at the sandboxes\' states'))
      .finally(() => (busy = false))
  }, options.intervalMs)
  timer.unref()
  signal.addEventListener('abort', () => clearInterval(timer), { once: true })
  return { look }
}
