/** Joins two byte streams both ways, as a TCP proxy does. */
import type { Duplex } from 'node:stream'

/**
 * Pipes `a` and `b` into each other. An end on one side ends the other's writing side (a
 * half-close, passed on); an error or a cut (a close before the end) on either destroys both, as
 * does one side destroyed before the splice.
 */
export function splice(a: Duplex, b: Duplex): void {
  // One side gone already (a client that left while the other was dialled): its close has fired,
  // and would never reach the listener below, so the other side would stay open for good.
  if (a.destroyed || b.destroyed) {
    a.destroy()
    b.destroy()
    return
  }
  a.pipe(b)
  b.pipe(a)
  const cut = (): void => {
    a.destroy()
    b.destroy()
  }
  a.on('error', cut)
  b.on('error', cut)
  a.on('close', () => a.readableEnded || cut())
  b.on('close', () => b.readableEnded || cut())
}
