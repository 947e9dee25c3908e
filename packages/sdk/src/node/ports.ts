/**
 * A sandbox's ports from this machine: a raw TCP tunnel through the server (an HTTP upgrade on
 * the API's own port; the sandbox's host opens none), and a local listener that opens one tunnel
 * per connection, as `kubectl port-forward` does.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Connection, ConnectionOptions } from '../connection.js'
import { ConnectionError } from '../errors.js'
import { errorFromBody } from '../http-client.js'
import { connectionOf, type Sandbox } from '../sandbox.js'
import { splice } from './splice.js'

/** The protocol the server's tunnel upgrades to. */
const tunnelProtocol = 'sandstorm-tcp'

/** A raw TCP connection to a port of the sandbox, tunnelled through the server. */
export function connectPort(sandbox: Sandbox, port: number, options: ConnectionOptions = {}): Promise<Duplex> {
  return openTunnel(connectionOf(sandbox, options), sandbox.sandboxId, port, options.signal)
}

/** Listens on a local port and forwards each connection to a port of the sandbox (like `kubectl port-forward`). */
export function forwardPort(sandbox: Sandbox, port: number, options: PortForwardOptions & ConnectionOptions = {}): Promise<PortForward> {
  return listen(connectionOf(sandbox, options), sandbox.sandboxId, port, options)
}

/** Opens a TCP connection to `port` of a sandbox, through the server. */
async function openTunnel(connection: Connection, sandboxId: string, port: number, signal?: AbortSignal): Promise<Duplex> {
  const url = new URL(`${connection.apiUrl}/v1/sandboxes/${encodeURIComponent(sandboxId)}/ports/${port}/tunnel`)
  // Loaded on the first tunnel: node:https brings TLS, which a CLI start that opens none should not pay for.
  const { request } = url.protocol === 'https:' ? await import('node:https') : await import('node:http')
  return new Promise<Duplex>((resolve, reject) => {
    const req = request(url, {
      method: 'GET',
      signal,
      headers: { connection: 'Upgrade', upgrade: tunnelProtocol, authorization: `Bearer ${connection.apiKey()}` },
    })
    req.on('upgrade', (_res, socket: Socket, head: Buffer) => {
      socket.setNoDelay(true)
      if (head.length > 0) socket.unshift(head)
      resolve(socket)
    })
    req.on('response', (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
      res.on('end', () => reject(errorFromBody(res.statusCode ?? 0, res.statusMessage ?? '', text)))
    })
    req.on('error', (err) => reject(new ConnectionError('unavailable', `could not open a tunnel through ${connection.apiUrl}: ${err.message}`)))
    req.end()
  })
}

/** A local listener that forwards to a sandbox port. */
export interface PortForward {
  /** The local port connections are accepted on. */
  readonly localPort: number
  /** The local address it listens on. */
  readonly host: string
  /** Stops listening and cuts the connections it holds. */
  close(): Promise<void>
}

/** Options of forwardPort. */
export interface PortForwardOptions {
  /** @default 0 (any free port) */
  localPort?: number
  /** @default '127.0.0.1' */
  host?: string
  /** Called when a tunnel for a local connection could not be opened. */
  onError?(err: Error): void
}

/** Listens on a local port and tunnels each connection to `port` of the sandbox. */
async function listen(connection: Connection, sandboxId: string, port: number, options: PortForwardOptions = {}): Promise<PortForward> {
  const open = new Set<Duplex>()
  // Half-open allowed: a client that ends its side (a request sent whole) still gets the answer.
  const server: Server = createServer({ allowHalfOpen: true }, (local) => {
    local.pause()
    local.on('error', () => undefined)
    open.add(local)
    local.once('close', () => open.delete(local))
    openTunnel(connection, sandboxId, port).then(
      (remote) => {
        open.add(remote)
        remote.once('close', () => open.delete(remote))
        splice(local, remote)
        local.resume()
      },
      (err: Error) => {
        options.onError?.(err)
        local.destroy()
      },
    )
  })
  const host = options.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.localPort ?? 0, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return {
    localPort: (server.address() as AddressInfo).port,
    host,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy()
        server.close(() => resolve())
      }),
  }
}
