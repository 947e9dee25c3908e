/**
 * The sandbox list's states, order and page size: plain values, apart from the query schema in
 * list-api.ts, so that a client bundle that needs them brings no zod along.
 */

/** Sandbox states a list may ask for. */
export const sandboxStates = ['starting', 'running', 'paused', 'stopped', 'lost'] as const

/** Order of a list by start time (then id). */
export type SandboxListOrder = 'asc' | 'desc'

/** The most sandboxes one page holds. */
export const maxListLimit = 1000
