/**
 * Port forwarding: `GET /v1/sandboxes/:id/ports/:port/tunnel` with `Upgrade: sandstorm-tcp` and an
 * API key turns the connection into raw TCP to that port of the sandbox (as `docker attach` or
 * `kubectl port-forward` hijack theirs). `sandstorm port-forward` opens one per local connection.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { AgentApi } from '../../agent/index.js'
import { checkPort, SandstormError, splice, type Logger } from '../../shared/index.js'
import type { SandboxCatalog } from '../catalog.js'
import { presentedApiKey } from '../api-keys.js'
import { refuseUpgrade } from '../upgrade-refusal.js'
import { ingressStatusOf } from './ingress-status.js'
import { releaseOnClose, type UpstreamBudget } from './upstream-budget.js'

/** The protocol name a tunnel upgrades to. */
export const tunnelProtocol = 'sandstorm-tcp'

const tunnelPath = /^\/v1\/sandboxes\/([^/]+)\/ports\/([^/]+)\/tunnel$/

/** The sandbox and port of a tunnel request's path, or undefined for another path. */
export function tunnelTargetOf(path: string): { sandboxId: string; port: string } | undefined {
  const match = tunnelPath.exec(path)
  return match ? { sandboxId: decodeURIComponent(match[1]!), port: decodeURIComponent(match[2]!) } : undefined
}

/** What a tunnel needs. */
export interface TunnelOptions {
  agent: AgentApi
  catalog: SandboxCatalog
  checkApiKey(key: string): boolean
  logger: Logger
  /** Slots for connections into sandboxes, shared with ingress: a tunnel past it is refused with 503. */
  budget: UpstreamBudget
}

/** Answers an upgrade to a tunnel: 101 and bytes both ways, or an HTTP error and a closed socket. */
export function serveTunnel(req: IncomingMessage, socket: Duplex, head: Buffer, target: { sandboxId: string; port: string }, options: TunnelOptions): void {
  socket.on('error', () => undefined)
  const refuse = (err: SandstormError): void => refuseUpgrade(socket, err, options.logger, { status: ingressStatusOf(err) })
  try {
    const key = presentedApiKey(req.headers)
    if (key === undefined || !options.checkApiKey(key)) throw new SandstormError('unauthenticated', `${key === undefined ? 'missing' : 'wrong'} API key: expected "Authorization: Bearer <key>"`)
    if ((req.headers.upgrade ?? '').toLowerCase() !== tunnelProtocol) throw new SandstormError('invalid_argument', `Upgrade: expected ${tunnelProtocol}, got ${JSON.stringify(req.headers.upgrade ?? '')}`)
    const port = checkPort(target.port)
    const record = options.catalog.get(target.sandboxId)
    if (!record) throw new SandstormError('not_found', `sandbox "${target.sandboxId}" not found`)
    if (record.state !== 'running') throw new SandstormError('failed_precondition', `sandbox "${target.sandboxId}" is ${record.state}: expected a running sandbox`)
    const release = options.budget.take(target.sandboxId)
    // A client gone while the connect runs cancels it (one gone just as it ends: splice closes both).
    const gone = new AbortController()
    const cancel = (): void => gone.abort(new SandstormError('canceled', 'the tunnel\'s client left'))
    socket.once('close', cancel)
    options.agent.connect(target.sandboxId, port, { signal: gone.signal }).then(
      (upstream) => {
        releaseOnClose(upstream, release)
        socket.off('close', cancel)
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${tunnelProtocol}\r\nconnection: upgrade\r\n\r\n`)
        if (head.length > 0) upstream.write(head)
        splice(socket, upstream)
        options.logger.debug({ sandboxId: target.sandboxId, port }, 'tunnel opened')
      },
      (err: unknown) => {
        release()
        socket.off('close', cancel)
        if (!socket.destroyed) refuse(SandstormError.from(err))
      },
    )
  } catch (err) {
    refuse(SandstormError.from(err))
  }
}
