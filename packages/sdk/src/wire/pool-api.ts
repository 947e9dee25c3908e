/** The warm pool routes of the HTTP API: /v1/pools[/:template] and POST /v1/pools/:template/wait. */
import { z } from 'zod'

/** Most sandboxes one pool may hold: a pool is a cache, not a fleet. */
export const maxPoolSize = 256

/** PUT /v1/pools/:template */
export const poolBody = z.strictObject({
  min: z.number().int().min(0).max(maxPoolSize),
  max: z.number().int().min(1).max(maxPoolSize),
})

/** POST /v1/pools/:template/wait */
export const poolWaitBody = z.strictObject({
  /** Ready sandboxes to wait for. @default the pool's min */
  ready: z.number().int().min(1).max(maxPoolSize).optional(),
  timeoutMs: z.number().int().positive().max(10 * 60_000).default(60_000),
})

/** A template's warm pool as the server reports it. */
export interface PoolInfo {
  template: string
  /** Ready sandboxes kept at all times (refilled after every hand-over). */
  min: number
  /** Most pooled sandboxes at once; the pool grows toward it after misses. */
  max: number
  /** Ready to hand over now. */
  ready: number
  /** Being started in the background. */
  starting: number
  /** Handed out and not yet destroyed. */
  inUse: number
  /** Creates served from the pool. */
  hits: number
  /** Creates that matched the pool but found it empty (served cold). */
  misses: number
}
