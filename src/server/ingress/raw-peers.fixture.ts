/**
 * Both ends of an ingress relay at the byte level, for tests of its bounds: a server standing for
 * a sandbox's app that keeps every connection it accepts, and a client on a plain TCP socket.
 * Tests only.
 */
import { once } from 'node:events'
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'

/** A server that accepts and, unless `onConnection` says otherwise, never answers. */
export interface HeldBackend {
  server: Server
  port: number
  /** Every connection it accepted, in order. */
  accepted: Socket[]
  /** Resolves once it has accepted `count` connections in all. */
  acceptedCount(count: number): Promise<void>
  /** Destroys every connection and closes the server. */
  close(): Promise<void>
}

/** Starts a backend; `onConnection` may answer what comes on a connection (by default nothing is). */
export async function heldBackend(onConnection: (socket: Socket) => void = () => undefined): Promise<HeldBackend> {
  const accepted: Socket[] = []
  const waiters = new Set<{ count: number; resolve: () => void }>()
  const server = createServer((socket) => {
    socket.on('error', () => undefined)
    // Read (and drop) what comes unless onConnection reads it: a socket not read never sees the peer's close.
    socket.resume()
    accepted.push(socket)
    for (const w of waiters) if (accepted.length >= w.count) (waiters.delete(w), w.resolve())
    onConnection(socket)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    server,
    port: (server.address() as AddressInfo).port,
    accepted,
    acceptedCount: (count) => (accepted.length >= count ? Promise.resolve() : new Promise((resolve) => waiters.add({ count, resolve }))),
    async close() {
      for (const s of accepted) s.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/** Resolves once `socket` has closed (at once if it has). */
export function closeOf(socket: Socket): Promise<void> {
  return socket.closed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve()))
}

/** A client on its own TCP connection: what it received so far, and ways to wait for more or for the close. */
export interface RawClient {
  socket: Socket
  received(): string
  /** Resolves with what was received once it matches `pattern`, or once the connection closed. */
  until(pattern: RegExp): Promise<string>
  /** Resolves once the connection has closed. */
  closed: Promise<void>
}

/** Connects to 127.0.0.1:`port` and sends `request`. */
export function rawClient(port: number, request: string): RawClient {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => undefined)
  let text = ''
  const waiters = new Set<{ pattern: RegExp; resolve: (text: string) => void }>()
  const check = (ended: boolean): void => {
    for (const w of waiters) if (ended || w.pattern.test(text)) (waiters.delete(w), w.resolve(text))
  }
  socket.setEncoding('latin1').on('data', (d: string) => {
    text += d
    check(false)
  })
  // Not events.once: it rejects on the socket's error (a reset), and the close comes after it anyway.
  const closed = new Promise<void>((resolve) => socket.once('close', () => (check(true), resolve())))
  socket.write(request)
  return {
    socket,
    received: () => text,
    until: (pattern) => (pattern.test(text) || socket.closed ? Promise.resolve(text) : new Promise((resolve) => waiters.add({ pattern, resolve }))),
    closed,
  }
}

/** A GET of `path` on `host`, as a client sends it. */
export const getRequest = (host: string, path = '/'): string => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`

/** An upgrade to WebSocket of `path` on `host`. */
export const upgradeRequest = (host: string, path = '/ws'): string =>
  `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`
