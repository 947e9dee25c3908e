/**
 * A request whose body stops arriving is cut. The edge sets no limit on how long a request takes
 * to arrive (an upload streams for as long as it needs), so a body that pauses for good (a client
 * gone without a FIN, or one that sends a byte now and then to hold a connection) would otherwise
 * hold its socket, and whatever the route feeds from it, forever.
 */
import type { IncomingMessage } from 'node:http'

/** Options of createBodyIdleWatch. */
export interface BodyIdleOptions {
  /** A body from which nothing arrived for this long is cut. @default 120_000 */
  idleMs?: number
  /** How often the bodies are looked at. @default a quarter of idleMs */
  checkMs?: number
}

/** Watches the bodies still arriving. */
export interface BodyIdleWatch {
  /** Watches `req` until its body has all arrived or its connection is gone. */
  watch(req: IncomingMessage): void
  close(): void
}

/**
 * One timer for every body being received: a request whose socket read nothing between looks
 * `idleMs` apart is destroyed. Nothing listens on the bodies themselves (a listener would change
 * how they flow): the socket's byte count says whether anything came. A route that stops reading
 * (its sandbox takes no more) is idle too, and is cut the same way.
 */
export function createBodyIdleWatch(options: BodyIdleOptions = {}): BodyIdleWatch {
  const idleMs = options.idleMs ?? 120_000
  const checkMs = options.checkMs ?? Math.max(1, Math.floor(idleMs / 4))
  const watched = new Map<IncomingMessage, { bytes: number; since: number }>()
  let timer: NodeJS.Timeout | undefined
  const look = (): void => {
    const now = Date.now()
    for (const [req, seen] of watched) {
      if (req.complete || req.socket.destroyed) {
        watched.delete(req)
        continue
      }
      const bytes = req.socket.bytesRead
      if (bytes !== seen.bytes) watched.set(req, { bytes, since: now })
      else if (now - seen.since >= idleMs) {
        watched.delete(req)
        req.socket.destroy()
      }
    }
    if (watched.size === 0) {
      clearInterval(timer)
      timer = undefined
    }
  }
  return {
    watch(req) {
      // A request without a body (most of them) has nothing to wait for.
      if (req.complete || (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined)) return
      watched.set(req, { bytes: req.socket.bytesRead, since: Date.now() })
      if (!timer) {
        timer = setInterval(look, checkMs)
        timer.unref()
      }
    },
    close() {
      clearInterval(timer)
      timer = undefined
      watched.clear()
    },
  }
}
