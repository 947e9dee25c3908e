/** Snapshots as an agent takes, lists and deletes them. Forks and restores are creates from one. */
import type { CallOptions, SnapshotInfo } from '../shared/index.js'

/**
 * A snapshot as the agent records it on disk: what the API shows of it (the wire `SnapshotInfo`)
 * and the environment of its sandbox, which the API never shows (it may hold secrets).
 */
export interface AgentSnapshot extends SnapshotInfo {
  env: Record<string, string>
}

/** What a restore starts the sandbox's new instance with (the sandbox's own config; its network stays as it is). */
export interface AgentRestoreRequest {
  snapshotId: string
  memoryMiB: number
  cpus: number
  pidsMax: number
  diskMiB: number
  env: Record<string, string>
}

/** The agent's snapshot operations. */
export interface AgentSnapshotApi {
  /** Freezes the sandbox, turns its writable layer into a read-only layer, thaws it. */
  take(sandboxId: string, req: { label?: string }, options?: CallOptions): Promise<AgentSnapshot>
  get(id: string, options?: CallOptions): Promise<AgentSnapshot>
  list(options?: CallOptions): Promise<AgentSnapshot[]>
  /** Deletes a snapshot; `failed_precondition` while a snapshot or a sandbox stands on it. */
  remove(id: string, options?: CallOptions): Promise<void>
  /**
   * Puts a sandbox back at the snapshot, keeping its id: in place where the runtime can (its
   * processes end, its root is switched; `inPlace`), else a new instance starts first and the old
   * one is removed after, off the caller's path. Optional: without it, a restore is a destroy and
   * a create.
   */
  restore?(sandboxId: string, req: AgentRestoreRequest, options?: CallOptions): Promise<{ template: string; inPlace?: boolean }>
}
