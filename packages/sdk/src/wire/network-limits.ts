/** The egress policy's bound: a plain value, apart from the schemas in network.ts (no zod for the CLI's bundle). */

/** Entries a policy list may hold at most. */
export const maxPolicyEntries = 256
