/**
 * A relay through ingress (a request in flight, or an upgraded connection) that carries no byte
 * either way for long is ended. Once a request is in flight neither of its connections has any
 * other timeout, so an app that accepts and never answers, or a client that stops reading, would
 * hold both descriptors for good. An answer that keeps streaming is not idle.
 */
import type { Socket } from 'node:net'

/** Options of createRelayIdleWatch. */
export interface RelayIdleOptions {
  /** A relay that carried nothing for this long is ended. @default 600_000 (10 minutes) */
  idleMs?: number
  /** How often the relays are looked at. @default a quarter of idleMs */
  checkMs?: number
}

/** Watches the relays in flight. */
export interface RelayIdleWatch {
  /**
   * Watches the relay on the client's connection `socket` (every byte of a relay crosses it, one way
   * or the other) and calls `onIdle` once, when it idled; the returned function stops watching
   * (safe to call twice).
   */
  watch(socket: Socket, onIdle: () => void): () => void
  close(): void
}

/**
 * One timer for every relay: one whose client connection read and wrote nothing between looks
 * `idleMs` apart is ended. Nothing listens on the streams themselves: the socket's byte counts say
 * whether anything moved (bytesWritten counts what was handed to the socket, so an answer held
 * back by a client that reads nothing does not count).
 */
export function createRelayIdleWatch(options: RelayIdleOptions = {}): RelayIdleWatch {
  const idleMs = options.idleMs ?? 600_000
  // At most a day apart: a timer past 2^31 - 1 ms fires at once, and then every millisecond.
  const checkMs = options.checkMs ?? Math.min(86_400_000, Math.max(1, Math.floor(idleMs / 4)))
  const watched = new Map<object, { socket: Socket; onIdle: () => void; bytes: number; since: number }>()
  let timer: NodeJS.Timeout | undefined
  const bytesOf = (socket: Socket): number => socket.bytesRead + socket.bytesWritten
  const look = (): void => {
    const now = Date.now()
    for (const [key, relay] of watched) {
      if (relay.socket.destroyed) {
        watched.delete(key)
        continue
      }
      const bytes = bytesOf(relay.socket)
      if (bytes !== relay.bytes) {
        relay.bytes = bytes
        relay.since = now
      } else if (now - relay.since >= idleMs) {
        watched.delete(key)
        relay.onIdle()
      }
    }
    if (watched.size === 0) {
      clearInterval(timer)
      timer = undefined
    }
  }
  return {
    watch(socket, onIdle) {
      const key = {}
      watched.set(key, { socket, onIdle, bytes: bytesOf(socket), since: Date.now() })
      if (!timer) {
        timer = setInterval(look, checkMs)
        timer.unref()
      }
      return () => void watched.delete(key)
    },
    close() {
      clearInterval(timer)
      timer = undefined
      watched.clear()
    },
  }
}
