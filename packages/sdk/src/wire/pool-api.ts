/** The warm pool routes of the HTTP API: /v1/pools[/:template] and POST /v1/pools/:template/wait. */
import { z } from 'zod'
import { maxPoolSize } from './pool-limits.js'

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
  /**
   * True for a pool the server keeps by default (`sandstorm up`'s `--pool`), not one set through
   * the API: it is not stored, so a restart brings back the server's defaults, and `PUT` of the
   * template stores it (and it is no longer a default). Unset for a stored pool.
   */
  default?: boolean
}
