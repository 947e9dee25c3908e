/** The HTTP status of an error that ingress and tunnels answer. */
import { httpStatusOf, type SandstormError } from '../../shared/index.js'

/**
 * A sandbox port that cannot be reached, or a sandbox that does not run, is a bad gateway (502, as
 * E2B's proxy answers); no room left for another connection into sandboxes is the server's own
 * lack (503, not the 429 of a client that asks too much); any other error has its code's status.
 */
export function ingressStatusOf(err: SandstormError): number {
  if (err.code === 'unavailable') return 502
  if (err.code === 'resource_exhausted') return 503
  return httpStatusOf[err.code]
}
