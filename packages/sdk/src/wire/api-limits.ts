/**
 * The API's request bounds and runtime names: plain values, apart from the schemas in api.ts, so
 * that a client that needs only them (the CLI's bundle) brings no zod along.
 */

/** Upper bounds that a request may ask for; a server may set lower ones. */
export const limits = {
  maxMemoryMiB: 64 * 1024,
  minMemoryMiB: 16,
  maxCpus: 64,
  maxTimeoutMs: 7 * 24 * 3600 * 1000,
  maxPids: 32768,
  minDiskMiB: 64,
  maxDiskMiB: 1024 * 1024,
} as const

/** Runtimes a sandbox may run on: containers (runc) or microVMs (qemu). An agent offers a subset. */
export const runtimeNames = ['runc', 'qemu'] as const
/** One of runtimeNames. */
export type RuntimeName = (typeof runtimeNames)[number]
