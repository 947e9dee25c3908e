/** Plain TCP connections for tests of a server's bounds on them. */
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'

/** Opens `count` connections to 127.0.0.1:`port`, each pushed to `held` (the caller destroys them) once connected. */
export async function openConnections(port: number, count: number, held: Socket[]): Promise<void> {
  for (let i = 0; i < count; i++) {
    const s = connect(port, '127.0.0.1')
    s.on('error', () => undefined)
    held.push(s)
    await once(s, 'connect')
  }
}

/** Opens one more connection (pushed to `held`) and says whether the server closed it within `withinMs`. */
export function closedByServer(port: number, held: Socket[], withinMs = 8000): Promise<boolean> {
  const s = connect(port, '127.0.0.1')
  s.on('error', () => undefined)
  held.push(s)
  return new Promise<boolean>((resolve) => {
    s.once('close', () => resolve(true))
    setTimeout(() => resolve(false), withinMs).unref()
  })
}
