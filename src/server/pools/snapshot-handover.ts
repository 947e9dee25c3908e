/**
 * A create from a snapshot (a fork's, or E2B's create of a snapshot id) served by a warm pool: a
 * ready sandbox of the snapshot's template, started with the config the snapshot asks for, is
 * restored to the snapshot and handed over, instead of a container started cold. A fork of N then
 * costs N restores of sandboxes that already run (their network namespace, address and rules
 * made) rather than N starts.
 */
import type { AgentApi } from '../../agent/index.js'
import { SandstormError } from '../../shared/index.js'
import type { CallOptions, Logger, SandboxInfo, SandboxNetwork } from '../../shared/index.js'
import type { CreateSandboxInput, SandboxService } from '../sandbox-service.js'
import { matchesPool, type PooledConfig } from './pool-match.js'
import type { PooledSandbox } from './warm-pool.js'

/** How long the destroy of a pooled sandbox whose restore failed may take before it is logged and left to the next start's adoption. */
const destroyTimeoutMs = 60_000

/**
 * Whether a create from a snapshot may take a sandbox of a pool whose sandboxes started with
 * `pooled`: as for a create of the template, except that env may differ, since the restore starts
 * the sandbox again with the create's env (the snapshot's).
 */
export function matchesPoolFromSnapshot(input: CreateSandboxInput, network: SandboxNetwork, pooled: PooledConfig): boolean {
  return matchesPool({ ...input, env: undefined }, network, pooled)
}

/**
 * Whether the agent can restore a pooled sandbox of `template` to the snapshot: it restores
 * sandboxes (a fleet's router does not: the snapshot may sit on another host than the pool's sandbox),
 * the snapshot is of that template, and it holds filesystem layers, not a saved machine (a
 * machine comes back by a start of its own, so a pooled sandbox would save nothing). An image
 * template's env comes under the restore's, as under a create's.
 */
export async function restorableFromPool(agent: AgentApi, snapshotId: string, template: string, options: CallOptions = {}): Promise<boolean> {
  if (!agent.snapshots?.restore) return false
  const snapshot = await agent.snapshots.get(snapshotId, options).catch(() => undefined)
  return snapshot !== undefined && snapshot.template === template && snapshot.driver !== 'machine'
}

/** What restoreHandedOver needs. */
export interface SnapshotHandOverDeps {
  agent: AgentApi
  sandboxes: Pick<SandboxService, 'handOver'>
  logger: Logger
}

/**
 * Restores a sandbox taken out of a pool to the snapshot, with the create's env, and records it as
 * created by `input` from that snapshot (the same record a cold create from it makes). On any
 * failure the sandbox is destroyed, never handed back to the pool (its root may be half replaced),
 * and the error is thrown for the caller to start one cold.
 */
export async function restoreHandedOver(deps: SnapshotHandOverDeps, taken: PooledSandbox, input: CreateSandboxInput, network: SandboxNetwork, snapshotId: string, options: CallOptions = {}): Promise<SandboxInfo> {
  const { agent, sandboxes, logger } = deps
  try {
    const restore = agent.snapshots?.restore
    if (!restore) throw new SandstormError('failed_precondition', 'this agent cannot restore a sandbox: expected an agent with a layer store')
    const { memoryMiB, cpus, pidsMax, diskMiB } = taken
    await restore.call(agent.snapshots, taken.id, { snapshotId, memoryMiB, cpus, pidsMax, diskMiB, env: input.env ?? {} }, options)
    return await sandboxes.handOver(taken, input, network, options, snapshotId)
  } catch (err) {
    // Not under the request's signal: a destroy cut short would leave a sandbox no one knows of
    // running until the next start's adoption.
    await agent.destroy(taken.id, { timeoutMs: destroyTimeoutMs }).catch((e: unknown) => {
      if (!(e instanceof SandstormError && e.code === 'not_found')) logger.error({ sandboxId: taken.id, err: e }, 'could not destroy a pooled sandbox whose restore failed')
    })
    throw err
  }
}
