/** Snapshots as an agent takes, lists and deletes them. Forks and restores are creates from one. */
import type { CallOptions } from '../shared/index.js'

/** A snapshot as the agent records it on disk. */
export interface AgentSnapshot {
  id: string
  /** The snapshot the sandbox was started from, if any: the parent in the snapshot tree. */
  parentId: string | null
  /** The sandbox it was taken of. */
  sandboxId: string
  template: string
  label: string
  /** The storage driver that holds its layer ('overlay' | 'btrfs'). */
  driver: string
  /** How deep its layer chain is (1 once squashed). */
  depth: number
  memoryMiB: number
  cpus: number
  pidsMax: number
  /** The disk quota of the sandbox it was taken of; 0 for one taken before quotas. */
  diskMiB: number
  env: Record<string, string>
  /** Working directory of commands in sandboxes started from it. */
  cwd: string
  createdAt: string
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
   * Replaces a sandbox by a fresh one at the snapshot, keeping its id: the new one starts first
   * and the old one is removed after, off the caller's path. Optional: without it, a restore is a
   * destroy and a create.
   */
  restore?(sandboxId: string, req: AgentRestoreRequest, options?: CallOptions): Promise<{ template: string }>
}
