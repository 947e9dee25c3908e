/** Kept-alive connections into sandbox ports, for the agent in this process (whose connections are sockets). */
import { Agent } from 'node:http'
import type { Duplex } from 'node:stream'
import type { IngressTarget } from './ingress-target.js'

/** An http.Agent whose connections go into sandbox ports: requests name the sandbox as `host` and the port as `port`. */
export class SandboxPortPool extends Agent {
  constructor(private readonly open: (target: IngressTarget) => Promise<Duplex>) {
    super({ keepAlive: true, timeout: 2000, maxFreeSockets: 16 })
  }

  override createConnection(options: { host?: string | null; port?: number | string | null }, callback: (err: Error | null, socket?: Duplex) => void): undefined {
    this.open({ sandboxId: String(options.host), port: Number(options.port), by: 'host' }).then(
      (socket) => callback(null, socket),
      (err: Error) => callback(err),
    )
    return undefined
  }

  /** A connection waiting for its next request, into `sandboxId` (any sandbox when undefined); undefined when there is none. */
  idleConnection(sandboxId: string | undefined): Duplex | undefined {
    // The agent names its connections `host:port:...`, and a sandbox id holds no colon.
    for (const [name, sockets] of Object.entries(this.freeSockets)) {
      if (sandboxId !== undefined && !name.startsWith(`${sandboxId}:`)) continue
      const idle = sockets?.find((s) => !s.destroyed)
      if (idle) return idle
    }
    return undefined
  }
}
