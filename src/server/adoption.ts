import type { AgentApi } from '../agent/index.js'
import { SandstormError } from '../shared/index.js'
import type { CallOptions, Logger } from '../shared/index.js'
import type { SandboxCatalog } from './catalog.js'
import { stateOf } from './sandbox-service.js'

/** Options of adoptSandboxes. */
export interface AdoptionOptions {
  agent: AgentApi
  catalog: SandboxCatalog
  logger: Logger
}

/** What adoption decided, by sandbox id. */
export interface AdoptionResult {
  adopted: string[]
  forgotten: string[]
  orphansDestroyed: string[]
}

/**
 * Brings the catalog in line with what the agent runs, on start: rows whose sandbox still runs
 * stay (with the agent's state); rows whose sandbox is gone are deleted; sandboxes the agent runs
 * but the catalog does not know are orphans (a create that crashed half-way) and are destroyed.
 */
export async function adoptSandboxes(options: AdoptionOptions, callOptions: CallOptions = {}): Promise<AdoptionResult> {
  const { agent, catalog, logger } = options
  const onHost = new Map((await agent.list(callOptions)).map((s) => [s.id, s]))
  const result: AdoptionResult = { adopted: [], forgotten: [], orphansDestroyed: [] }

  for (const record of catalog.list()) {
    const sandbox = onHost.get(record.id)
    if (sandbox) {
      catalog.update(record.id, { state: stateOf(sandbox), runtime: sandbox.runtime || record.runtime })
      result.adopted.push(record.id)
      logger.info({ sandboxId: record.id, state: sandbox.status }, 'adopted a sandbox that still runs')
    } else if (record.state === 'paused' && record.lifecycle?.hibernatedAs) {
      // A paused machine written to disk has no VM until it is resumed: it is kept, as it was.
      result.adopted.push(record.id)
    } else {
      catalog.delete(record.id)
      result.forgotten.push(record.id)
      logger.warn({ sandboxId: record.id, state: record.state }, 'sandbox is gone from the agent; removed from the catalog')
    }
  }

  for (const sandbox of onHost.values()) {
    if (catalog.get(sandbox.id)) continue
    try {
      await agent.destroy(sandbox.id, callOptions)
      result.orphansDestroyed.push(sandbox.id)
      logger.warn({ sandboxId: sandbox.id }, 'destroyed an orphan sandbox that the catalog does not know')
    } catch (err) {
      // One stuck orphan must not keep the server from starting; the next start tries again.
      logger.error({ sandboxId: sandbox.id, err: SandstormError.from(err) }, 'could not destroy an orphan sandbox')
    }
  }
  return result
}
