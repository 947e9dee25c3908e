/** The warm pools' bound: a plain value, apart from the schemas in pool-api.ts (no zod for the CLI's bundle). */

/** Most sandboxes one pool may hold: a pool is a cache, not a fleet. */
export const maxPoolSize = 256
