/**
 * Per-sandbox shares of the agent's own servers for sandboxes (the resolver's TCP port, the name
 * checks): each listener holds a bound of connections of all sandboxes together, and without a
 * share per source a few sandboxes could hold all of them (a byte every few seconds keeps one
 * open), leaving every other sandbox without DNS over TCP, HTTP or TLS.
 */
import type { Server, Socket } from 'node:net'

/** Closes each new connection of `server` from a source address that already holds `perSource`. */
export function capPerSource(server: Server, perSource: number): void {
  const open = new Map<string, number>()
  server.on('connection', (socket: Socket) => {
    const source = socket.remoteAddress ?? ''
    const held = open.get(source) ?? 0
    if (held >= perSource) return void socket.destroy()
    open.set(source, held + 1)
    socket.once('close', () => {
      const left = (open.get(source) ?? 1) - 1
      if (left > 0) open.set(source, left)
      else open.delete(source)
    })
  })
}
