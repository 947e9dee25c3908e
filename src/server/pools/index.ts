/** Warm pools: sandboxes started ahead of demand per template, so that a create is a hand-over. */
export { createWarmPools, type WarmPools, type WarmPoolsOptions, type CreateSource, type CreatedSandboxInfo } from './pool-manager.js'
export { poolRoutes } from './routes-pools.js'
export type { PoolConfig } from './pool-store.js'
