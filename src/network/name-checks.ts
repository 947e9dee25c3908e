/**
 * Where a sandbox under a domain policy meets its names: its TCP 80 and 443 are steered here
 * (firewall.ts). HTTP requests are read one by one and TLS connections up to the ClientHello;
 * a request whose Host, or a connection whose server name, is not an allowed name is refused.
 * An allowed one goes to the address that name resolves to, never to the address the sandbox
 * dialled: a Host or SNI of an allowed name sent to another host's address reaches the allowed
 * host, not the other one.
 */
import { createServer as createHttpServer, request, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { splice, type Logger } from '../shared/index.js'
import { relayHead } from '../shared/http-relay.js'
import { capPerSource } from './source-caps.js'
import { createSniReader } from './tls-sni.js'

/** What the checks need to know of the sandbox that connects. */
export interface NameCheckClient {
  allowsName(name: string): boolean
  /** Addresses of an allowed name that the sandbox may reach (resolved, filtered and pinned), first to try first. */
  addressesOf(name: string): Promise<string[]>
}

/** Options of startNameChecks. */
export interface NameCheckOptions {
  host: string
  /** The sandbox with this source address under a domain policy, or undefined. */
  clientOf(address: string): NameCheckClient | undefined
  logger: Logger
}

/** The two listeners. */
export interface NameChecks {
  httpPort: number
  tlsPort: number
  /** Ends every connection from a sandbox's address (its policy changed, or it is gone). */
  closeFrom(address: string): void
  close(): Promise<void>
}

const connectTimeoutMs = 10_000
/** Connections each listener holds at once, of all sandboxes. */
const maxConnections = 8192
/** Connections each listener holds at once of one sandbox (a browser opens six per host). */
const perSandbox = 128
/** The most read of a TLS connection before its ClientHello must be complete (tiny records make a 64 KiB hello longer). */
const maxHelloStream = 128 * 1024

/** A Host header's name: no port, no trailing dot, lower case; IPv6 literals as they are. */
export function hostName(host: string | undefined): string {
  if (!host) return ''
  const bare = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:[0-9]*$/, '')
  return bare.toLowerCase().replace(/\.$/, '')
}

/** Connects to the first address of `name` that answers on `port`. */
async function dial(client: NameCheckClient, name: string, port: number): Promise<Socket> {
  const addresses = await client.addressesOf(name)
  let last: Error = new Error(`${name} has no address this sandbox may reach`)
  for (const address of addresses) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const socket = connect({ host: address, port, timeout: connectTimeoutMs })
        socket.once('connect', () => {
          socket.setTimeout(0)
          resolve(socket)
        })
        socket.once('timeout', () => socket.destroy(new Error(`${address}:${port} did not answer`)))
        socket.once('error', reject)
      })
    } catch (err) {
      last = err as Error
    }
  }
  throw last
}

/** Starts both listeners on `host`, ports picked by the kernel. */
export async function startNameChecks(options: NameCheckOptions): Promise<NameChecks> {
  const log = options.logger.child({ component: 'name-checks' })
  const source = (socket: Socket): string => socket.remoteAddress ?? ''

  const refuse = (res: ServerResponse, status: number, message: string): void => {
    if (res.headersSent) return void res.destroy()
    res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' }).end(`sandstorm: ${message}\n`)
  }

  /** The client and host of a request, or why it is refused. */
  const check = (req: IncomingMessage): { client: NameCheckClient; name: string } | { status: number; why: string } => {
    const client = options.clientOf(source(req.socket))
    const name = hostName(req.headers.host)
    if (!client) return { status: 403, why: 'this sandbox has no domain policy here' }
    // Only origin-form targets: an absolute URI would name a host of its own past the Host check.
    if (!req.url?.startsWith('/')) return { status: 400, why: `expected a request target that starts with /, got ${JSON.stringify(req.url?.slice(0, 80))}` }
    if (!client.allowsName(name)) return { status: 403, why: `${name || 'a request without Host'} is not allowed by this sandbox's network policy` }
    return { client, name }
  }

  const http: HttpServer = createHttpServer((req, res) => {
    const checked = check(req)
    if ('why' in checked) {
      log.debug({ source: source(req.socket), host: req.headers.host }, `refused an HTTP request: ${checked.why}`)
      return refuse(res, checked.status, checked.why)
    }
    dial(checked.client, checked.name, 80).then(
      (socket) => {
        const upstream = request({ method: req.method, path: req.url, headers: req.headers, setHost: false, createConnection: () => socket })
        upstream.on('response', (answer) => {
          answer.on('error', () => res.destroy())
          if (!relayHead(res, answer, answer.rawHeaders)) {
            answer.destroy()
            upstream.destroy()
            return refuse(res, 502, `${checked.name} answered with a status line or headers that cannot be sent on`)
          }
          answer.pipe(res)
        })
        upstream.on('error', () => (res.headersSent ? res.destroy() : refuse(res, 502, `${checked.name} broke the connection`)))
        req.pipe(upstream)
      },
      (err: Error) => refuse(res, 502, `could not reach ${checked.name}: ${err.message}`),
    )
  })
  /** The most of an upgrade's answer head read before it must be complete. */
  const maxAnswerHead = 64 * 1024
  http.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    // Node takes its own error handler off an upgraded socket: a reset (the sandbox's, at any
    // moment) would otherwise be thrown out of the process.
    socket.on('error', () => socket.destroy())
    const checked = check(req)
    if ('why' in checked) {
      socket.end(`HTTP/1.1 ${checked.status} Refused\r\nconnection: close\r\ncontent-type: text/plain\r\n\r\nsandstorm: ${checked.why}\n`)
      return undefined
    }
    dial(checked.client, checked.name, 80).then(
      (upstream) => {
        const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`]
        for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`)
        upstream.write(`${lines.join('\r\n')}\r\n\r\n`)
        socket.on('error', () => upstream.destroy())
        socket.on('close', () => upstream.destroy())
        // Nothing more of the sandbox's goes up until the server has switched protocols (101):
        // bytes sent behind the upgrade request may be another HTTP request, whose Host nobody
        // checked. A server that does not switch answers this one request, and the connection ends.
        upstream.on('error', () => socket.destroy())
        const parts: Buffer[] = []
        let size = 0
        let tail = Buffer.alloc(0)
        const onAnswer = (chunk: Buffer): void => {
          parts.push(chunk)
          size += chunk.length
          // Only the head's last bytes and this chunk are searched; the head is copied once, whole.
          const window = Buffer.concat([tail, chunk])
          if (window.indexOf('\r\n\r\n') < 0) {
            if (size > maxAnswerHead) (upstream.destroy(), socket.destroy())
            tail = window.subarray(Math.max(0, window.length - 3))
            return
          }
          const answer = Buffer.concat(parts)
          upstream.off('data', onAnswer)
          upstream.pause()
          socket.write(answer)
          if (!/^HTTP\/1\.[01] 101 /.test(answer.subarray(0, 64).toString('latin1'))) {
            upstream.pipe(socket)
            return
          }
          if (head.length > 0) upstream.write(head)
          splice(socket, upstream)
        }
        upstream.on('data', onAnswer)
      },
      () => socket.destroy(),
    )
  })
  http.on('clientError', (_err, socket: Duplex) => socket.destroy())

  const tls: Server = createServer((socket) => {
    socket.on('error', () => undefined)
    socket.setTimeout(connectTimeoutMs, () => socket.destroy())
    // The idle timeout alone would let a hello that comes a byte every few seconds hold the connection for hours.
    const helloDeadline = setTimeout(() => socket.destroy(), connectTimeoutMs)
    socket.once('close', () => clearTimeout(helloDeadline))
    const client = options.clientOf(source(socket))
    const reader = createSniReader()
    const received: Buffer[] = []
    let receivedBytes = 0
    const onData = (chunk: Buffer): void => {
      received.push(chunk)
      receivedBytes += chunk.length
      const sni = receivedBytes > maxHelloStream ? { refused: 'no complete ClientHello in the first 128 KiB' } : reader.push(chunk)
      if ('more' in sni) return
      clearTimeout(helloDeadline)
      socket.off('data', onData)
      socket.pause()
      const name = 'name' in sni ? sni.name : ''
      if (!client || !('name' in sni) || !client.allowsName(name)) {
        log.debug({ source: source(socket), name }, `refused a TLS connection: ${'refused' in sni ? sni.refused : `${name} is not allowed`}`)
        socket.destroy()
        return
      }
      dial(client, name, 443).then(
        (upstream) => {
          socket.setTimeout(0)
          upstream.write(Buffer.concat(received, receivedBytes))
          splice(socket, upstream)
          socket.resume()
        },
        () => socket.destroy(),
      )
    }
    socket.on('data', onData)
  })

  const listen = (server: HttpServer | Server): Promise<number> =>
    new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, options.host, () => {
        server.off('error', reject)
        resolve((server.address() as AddressInfo).port)
      })
    })
  http.maxConnections = maxConnections
  tls.maxConnections = maxConnections
  const sources = [capPerSource(http, perSandbox), capPerSource(tls, perSandbox)]
  const [httpPort, tlsPort] = [await listen(http), await listen(tls)]
  return {
    httpPort,
    tlsPort,
    closeFrom: (address) => sources.forEach((s) => s.closeFrom(address)),
    async close() {
      http.closeAllConnections()
      await Promise.all([new Promise<void>((r) => http.close(() => r())), new Promise<void>((r) => tls.close(() => r()))])
    },
  }
}
