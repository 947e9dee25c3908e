/**
 * Per-sandbox shares of the agent's own servers for sandboxes (the resolver's TCP port, the name
 * checks): each listener holds a bound of connections of all sandboxes together, and without a
 * share per source a few sandboxes could hold all of them (a byte every few seconds keeps one
 * open), leaving every other sandbox without DNS over TCP, HTTP or TLS.
 */
import type { Server, Socket } from 'node:net'

/** The connections of one listener, by source address. */
export interface SourceConnections {
  /**
   * Ends every connection from `address`: a connection the listener let through (a TLS splice,
   * a switched upgrade) carries on by itself, and must not outlive the policy that allowed it, or
   * the sandbox (a later one may get its address).
   */
  closeFrom(address: string): void
}

/** Closes each new connection of `server` from a source address that already holds `perSource`. */
export function capPerSource(server: Server, perSource: number): SourceConnections {
  const open = new Map<string, Set<Socket>>()
  server.on('connection', (socket: Socket) => {
    const source = (socket.remoteAddress ?? '').replace(/^::ffff:/, '')
    const held = open.get(source) ?? new Set<Socket>()
    if (held.size >= perSource) return void socket.destroy()
    held.add(socket)
    open.set(source, held)
    socket.once('close', () => {
      held.delete(socket)
      if (held.size === 0 && open.get(source) === held) open.delete(source)
    })
  })
  return {
    closeFrom(address) {
      for (const socket of open.get(address) ?? []) socket.destroy()
    },
  }
}
