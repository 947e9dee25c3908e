/** The snapshot routes of the HTTP API: request schemas and the shape of a snapshot. */
import { z } from 'zod'
import { networkBody } from './network.js'
import { limits } from './api-limits.js'

const labelKey = z.string().regex(/^[A-Za-z0-9_.\-/]{1,63}$/, 'a label key of letters, digits, _ . - / (1-63 chars)')

/** POST /v1/sandboxes/:id/snapshots */
export const takeSnapshotBody = z.strictObject({
  label: z.string().max(256).optional(),
})

/** POST /v1/snapshots/:id/fork */
export const forkBody = z.strictObject({
  /** How many sandboxes to start. @default 1 */
  count: z.number().int().min(1).max(256).default(1),
  timeoutMs: z.number().int().positive().max(limits.maxTimeoutMs).optional(),
  labels: z.record(labelKey, z.string().max(256)).optional(),
  /** As a create's. @default the server's default egress */
  network: networkBody.optional(),
})
export type ForkRequest = z.input<typeof forkBody>

/** POST /v1/sandboxes/:id/restore */
export const restoreBody = z.strictObject({
  snapshotId: z.string().regex(/^[a-z]{2,4}-[a-z0-9]{16}$/, 'a snapshot id such as "snap-k3j9x0q2m1c8v7d4"'),
})

/** A snapshot as the API returns it. */
export interface SnapshotInfo {
  id: string
  /** The snapshot its sandbox was started from: its parent in the snapshot tree. */
  parentId: string | null
  /** The sandbox it was taken of (which may be gone since). */
  sandboxId: string
  template: string
  label: string
  /** Storage driver holding its layer: 'overlay' or 'btrfs'. */
  driver: string
  /** Layers in its chain (kept shallow by squashing). */
  depth: number
  memoryMiB: number
  cpus: number
  pidsMax: number
  /** The disk quota of the sandbox it was taken of (its forks get the same); 0 for one taken before quotas. */
  diskMiB: number
  cwd: string
  createdAt: string
}
