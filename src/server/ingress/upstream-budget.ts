/**
 * The budget of connections into sandboxes (ingress and tunnels). Each is a descriptor of this
 * process where the agent runs here, held for as long as the client's connection is, so their
 * number is bounded, for all sandboxes together and for each one: a sandbox whose app accepts
 * and never answers (or many clients of one app) cannot take the server's descriptors, nor all
 * of the budget.
 */
import type { Duplex } from 'node:stream'
import { SandstormError } from '../../shared/index.js'

/** The bounds of the budget. */
export interface UpstreamBudgetOptions {
  /** Connections into sandboxes held at once, all together. */
  maxTotal: number
  /** Of those, what one sandbox may hold. */
  maxPerSandbox: number
}

/** Frees a slot of the budget; safe to call twice. */
export type ReleaseSlot = () => void

/**
 * Closes an idle connection that holds a slot, into `sandboxId` (into any sandbox when undefined),
 * and frees its slot before it returns; false when there is none.
 */
export type ReclaimIdle = (sandboxId: string | undefined) => boolean

/** Slots for connections into sandboxes. */
export interface UpstreamBudget {
  /**
   * A slot for one more connection into `sandboxId`; past either bound, `reclaim` (where given) may
   * close an idle connection to make room, else this throws `resource_exhausted`.
   */
  take(sandboxId: string, reclaim?: ReclaimIdle): ReleaseSlot
  /** Connections held, into `sandboxId` or into all sandboxes. */
  held(sandboxId?: string): number
}

/** Creates a budget. */
export function createUpstreamBudget(options: UpstreamBudgetOptions): UpstreamBudget {
  const bySandbox = new Map<string, number>()
  let total = 0
  return {
    take(sandboxId, reclaim) {
      const full = (): 'sandbox' | 'total' | undefined =>
        (bySandbox.get(sandboxId) ?? 0) >= options.maxPerSandbox ? 'sandbox' : total >= options.maxTotal ? 'total' : undefined
      let bound = full()
      if (bound === 'sandbox' && reclaim?.(sandboxId)) bound = full()
      if (bound === 'total' && reclaim?.(undefined)) bound = full()
      if (bound === 'sandbox') {
        throw new SandstormError('resource_exhausted', `sandbox "${sandboxId}" has ${options.maxPerSandbox} connections open through the server, the most one sandbox may have: try again once some have closed`)
      }
      if (bound === 'total') {
        throw new SandstormError('resource_exhausted', `the server has ${options.maxTotal} connections open into sandboxes, the most it may have: try again once some have closed`)
      }
      bySandbox.set(sandboxId, (bySandbox.get(sandboxId) ?? 0) + 1)
      total++
      let released = false
      return () => {
        if (released) return
        released = true
        total--
        const left = (bySandbox.get(sandboxId) ?? 1) - 1
        if (left === 0) bySandbox.delete(sandboxId)
        else bySandbox.set(sandboxId, left)
      }
    },
    held: (sandboxId) => (sandboxId === undefined ? total : (bySandbox.get(sandboxId) ?? 0)),
  }
}

/** Frees `release` when `stream` closes (at once if it has). */
export function releaseOnClose(stream: Duplex, release: ReleaseSlot): void {
  if (stream.closed) release()
  else stream.once('close', release)
}
