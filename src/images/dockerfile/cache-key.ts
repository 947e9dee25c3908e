/**
 * Build cache keys: a step's layer is stored under sha256 of its parent's key, the step as it
 * will run (expanded) and what it depends on, so a changed step or input misses, and so does
 * every step after it (its parent key changed).
 */
import { createHash } from 'node:crypto'
import type { Digest } from '../contracts.js'

/** The key of a step over `parent` (the previous layer's key, or the FROM's). */
export function stepCacheKey(parent: Digest, step: string, dependsOn: unknown): Digest {
  return `sha256:${createHash('sha256').update(JSON.stringify([parent, step, canonical(dependsOn)])).digest('hex')}`
}

/** The key a build starts from: what its FROM is. */
export function fromCacheKey(from: { image: string; digest: Digest } | { template: string; version: number; layerIds: readonly string[]; builtAt: string }): Digest {
  return stepCacheKey('sha256:' as Digest, 'FROM', from)
}

/** `value` with object keys sorted, so equal inputs give one JSON text. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical)
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, v]) => [k, canonical(v)]),
    )
  }
  return value
}
