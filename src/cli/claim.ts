/**
 * What a long-running command (up, server, agent) takes before it touches anything: its data dir
 * (one owner at a time) and its ports. A second `sandstorm up` on the same data dir, or on a busy
 * port, exits at once, having adopted, reaped and destroyed nothing.
 */
import { once } from 'node:events'
import { createServer, type Server } from 'node:net'
import { lockDataDir, SandstormError, type DataDirLock } from '../shared/index.js'

/** The data dir held, and the ports held until the server binds them itself. */
export interface Claim {
  lock: DataDirLock
  /** Lets go of the ports, right before the server listens on them. */
  releasePorts(): Promise<void>
}

/** Takes the data dir for `role`, then binds each port (0: none to hold) to be sure it is free. */
export async function claimHost(dataDir: string, role: string, ports: { host: string; port: number; flag: string }[]): Promise<Claim> {
  const lock = await lockDataDir(dataDir, role)
  const held: Server[] = []
  try {
    for (const p of ports) {
      if (p.port === 0) continue
      // A client that connects while the port is only held is dropped at once (it retries): a
      // connection left open would keep close() from finishing, and the real listener from starting.
      const server = createServer((socket) => socket.destroy())
      server.listen(p.port, p.host)
      try {
        await once(server, 'listening')
      } catch (err) {
        const why = (err as NodeJS.ErrnoException).code === 'EADDRINUSE' ? 'is taken (another server?)' : `cannot be bound (${(err as Error).message})`
        throw new SandstormError('failed_precondition', `port ${p.port} on ${p.host} ${why}: stop what holds it, or choose another with ${p.flag}`)
      }
      held.push(server)
    }
  } catch (err) {
    await Promise.all(held.map((s) => new Promise((r) => s.close(r))))
    await lock.release()
    throw err
  }
  return {
    lock,
    releasePorts: async () => void (await Promise.all(held.splice(0).map((s) => new Promise((r) => s.close(r))))),
  }
}
