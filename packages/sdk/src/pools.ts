/** Warm pools: set, list, wait for and delete a template's pool of ready sandboxes. */
import { resolveConnection, type ConnectionOptions } from './connection.js'
import { createApiClient } from './http-client.js'
import type { PoolInfo } from './wire/index.js'

/** Options of `setPool`. */
export interface SetPoolOptions extends ConnectionOptions {
  min: number
  max: number
}

/** Options of `waitForPool`. */
export interface WaitForPoolOptions extends ConnectionOptions {
  /** Ready sandboxes to wait for. @default the pool's min */
  ready?: number
  /** Give up (TimeoutError) after this long. @default 60_000 */
  waitMs?: number
}

const path = (template: string) => `/v1/pools/${encodeURIComponent(template)}`

/** Creates or resizes a template's pool; `Sandbox.create` then takes from it when its config matches. */
export function setPool(template: string, options: SetPoolOptions): Promise<PoolInfo> {
  return createApiClient(resolveConnection(options)).json<PoolInfo>({ method: 'PUT', path: path(template), json: { min: options.min, max: options.max }, signal: options.signal })
}

/** Every pool, by template name. */
export function listPools(options: ConnectionOptions = {}): Promise<PoolInfo[]> {
  return createApiClient(resolveConnection(options)).json<PoolInfo[]>({ method: 'GET', path: '/v1/pools', signal: options.signal })
}

/** Deletes a pool and destroys its ready sandboxes (handed-out ones keep running). */
export function deletePool(template: string, options: ConnectionOptions = {}): Promise<void> {
  return createApiClient(resolveConnection(options)).send({ method: 'DELETE', path: path(template), signal: options.signal })
}

/** Resolves once the pool has `ready` sandboxes ready (e.g. after `setPool`, before a benchmark). */
export function waitForPool(template: string, options: WaitForPoolOptions = {}): Promise<PoolInfo> {
  const waitMs = options.waitMs ?? 60_000
  const json = { ...(options.ready !== undefined ? { ready: options.ready } : {}), timeoutMs: waitMs }
  // The request itself must outlive the wait it asks for.
  return createApiClient(resolveConnection({ ...options, requestTimeoutMs: Math.max(options.requestTimeoutMs ?? 0, waitMs + 5_000) })).json<PoolInfo>({ method: 'POST', path: `${path(template)}/wait`, json, signal: options.signal })
}
