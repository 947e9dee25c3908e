/**
 * The server's one listening edge: a Node HTTP server in front of the one app. Requests for a
 * sandbox's port (by Host or E2B's headers) go to ingress before any route sees them; upgrades go
 * to ingress, to a port-forward tunnel or to a terminal; the app answers everything else.
 */
import { createServer, ServerResponse, type IncomingMessage, type OutgoingHttpHeader, type OutgoingHttpHeaders, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { getRequestListener } from '@hono/node-server'
import type { Hono } from 'hono'
import { httpStatusOf, SandstormError, type Logger } from '../shared/index.js'
import type { ServerEnv } from './context.js'
import { ingressTargetOf, type IngressTarget } from './ingress/ingress-target.js'
import type { Ingress } from './ingress/ingress.js'
import { serveTunnel, tunnelTargetOf, type TunnelOptions } from './ingress/tunnel.js'
import { terminalTargetOf, type TerminalSockets } from './terminal-socket.js'
import { refuseUpgrade } from './upgrade-refusal.js'
import { createBodyIdleWatch } from './body-idle.js'
import { defaultFdShares } from './fd-shares.js'

/** What the edge serves. */
export interface EdgeOptions {
  app: Hono<ServerEnv>
  ingress: Ingress
  tunnel: TunnelOptions
  /** Terminals: GET /v1/sandboxes/:id/pty upgraded to WebSocket. */
  terminal?: TerminalSockets
  /** Where a refused upgrade's hidden cause is logged. */
  logger: Logger
  /** The domain sandbox hosts are under (`<port>-<id>.<domain>`); read per request, as it is known once the server listens. */
  domain(): string
  /**
   * Connections held at once. Anyone who reaches the port can open connections, each a descriptor
   * for up to 60 s before its headers must be in; past the cap new ones are closed as they come.
   * @default a quarter of the process's open-file limit (fd-shares.ts)
   */
  maxConnections?: number
}

/** The HTTP server of the edge (not listening yet), and the upgraded connections it handed on. */
export interface Edge {
  server: Server
  /**
   * Destroys every connection that was upgraded (tunnels, terminals, an app's WebSockets, refusals
   * not yet closed): the HTTP server no longer counts them, so its close would wait for them.
   */
  cutUpgraded(): void
}

/**
 * A response to a request whose body was destroyed part way closes its connection once sent
 * (`Connection: close`). Routes read bodies through request-body.ts, which reads and drops the
 * rest of one they stop reading; a body read otherwise (the envd Connect handler's, past its
 * message cap) is destroyed instead, and Node then neither reads the rest nor closes: kept alive,
 * the connection would stall the client's next request behind the unread bytes until the
 * keep-alive timeout, then reset it.
 */
export class EdgeResponse extends ServerResponse {
  override writeHead(status: number, message?: string | OutgoingHttpHeaders | OutgoingHttpHeader[], headers?: OutgoingHttpHeaders | OutgoingHttpHeader[]): this {
    if (!this.req.complete && this.req.destroyed) this.shouldKeepAlive = false
    return typeof message === 'string' ? super.writeHead(status, message, headers) : super.writeHead(status, message)
  }
}

/** The edge: the server's own routes, sandbox hosts (ingress), tunnels and terminals on one HTTP server. */
export function createEdge(options: EdgeOptions): Edge {
  const upgraded = new Set<Duplex>()
  const serveApp = getRequestListener(options.app.fetch)
  /** The ingress target of a request, undefined for the server's own routes, or the error to answer. */
  const targetOf = (headers: import('node:http').IncomingHttpHeaders): IngressTarget | undefined | SandstormError => {
    try {
      return ingressTargetOf(headers, options.domain())
    } catch (err) {
      return SandstormError.from(err)
    }
  }
  // No limit on the time a request takes to arrive (Node's default is 5 minutes, then a 408): an
  // upload (a file, a build context, an image archive of gigabytes) streams for as long as it needs.
  // Headers must still arrive within Node's 60 s, and a body must not stop arriving (body-idle.ts).
  const bodies = createBodyIdleWatch()
  const server = createServer({ requestTimeout: 0, ServerResponse: EdgeResponse }, (req, res) => {
    bodies.watch(req)
    const target = targetOf(req.headers)
    if (target instanceof SandstormError) {
      res.writeHead(httpStatusOf[target.code], { 'content-type': 'application/json' }).end(JSON.stringify({ code: target.code, message: target.message }))
      return
    }
    if (target) return options.ingress.serve(req, res, target)
    void serveApp(req, res)
  })
  const badTarget = (req: IncomingMessage): SandstormError =>
    new SandstormError('invalid_argument', `request target: expected a URL path with valid %-escapes, got ${JSON.stringify(req.url)}`)
  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const target = targetOf(req.headers)
    if (target && !(target instanceof SandstormError)) return options.ingress.upgrade(req, socket, head, target)
    let path: string
    try {
      path = new URL(req.url ?? '/', 'http://edge').pathname
    } catch {
      throw badTarget(req)
    }
    const tunnel = tunnelTargetOf(path)
    if (tunnel && !(target instanceof SandstormError)) return serveTunnel(req, socket, head, tunnel, options.tunnel)
    const terminal = options.terminal && terminalTargetOf(path)
    if (terminal && !(target instanceof SandstormError)) return options.terminal!.serve(req, socket, head, terminal)
    refuseUpgrade(socket, target instanceof SandstormError ? target : new SandstormError('not_found', `no upgrade at ${req.url}: expected a sandbox host, /v1/sandboxes/:id/ports/:port/tunnel or /v1/sandboxes/:id/pty`), options.logger)
  }
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgraded.add(socket)
    socket.once('close', () => upgraded.delete(socket))
    // Anyone may send one, key or not: a target that is no URL (a port that is no number), or a
    // path segment with a bad %-escape (URIError, from the route's decode), is refused here,
    // where a throw would end the server; anything else is the server's own error.
    try {
      upgrade(req, socket, head)
    } catch (err) {
      const refused = err instanceof URIError ? badTarget(req) : SandstormError.from(err)
      refuseUpgrade(socket, refused, options.logger)
    }
  })
  server.on('close', () => bodies.close())
  server.maxConnections = options.maxConnections ?? defaultFdShares().maxConnections
  return {
    server,
    cutUpgraded() {
      for (const socket of upgraded) socket.destroy()
    },
  }
}
