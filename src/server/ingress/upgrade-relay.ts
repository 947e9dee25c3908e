/**
 * An upgrade (WebSocket) through ingress, once its connection into the sandbox is open. The client
 * and the sandbox are joined only when the sandbox switches protocols (101). Any other answer goes
 * back with `Connection: close` and both connections end: joined, the client's connection would
 * stay wired to the sandbox, and a proxy in front that pools its connections to this server could
 * send the next user's request (their API key with it) into the sandbox.
 */
import { request, type IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { splice } from '../../shared/index.js'

/** What the relay needs of the request and of ingress. */
export interface UpgradeRelay {
  req: IncomingMessage
  /** The client's connection, as the server's upgrade event gave it, and the bytes it sent past the head. */
  socket: Duplex
  head: Buffer
  /** The open connection into the sandbox's port. */
  upstream: Duplex
  /** The request's headers for the sandbox, as raw pairs. */
  headers: string[]
  /** The sandbox's answer headers for the client, as raw pairs (hop-by-hop ones dropped, cookies kept to its host). */
  backHeaders(raw: string[]): string[]
  /** Answers the client that the sandbox's answer cannot be sent on (a 502). */
  refuse(why: string): void
}

/** Sends the upgrade request into the sandbox and relays what it answers. */
export function relayUpgrade(o: UpgradeRelay): void {
  const outgoing = request({ method: o.req.method, path: o.req.url, headers: o.headers as never, setHost: false, createConnection: () => o.upstream as never })
  const cut = (): void => {
    outgoing.destroy()
    o.upstream.destroy()
  }
  o.socket.once('close', cut)
  // Once an answer has begun, a failure ends the client's connection: a refusal written then would land in its body.
  let answered = false
  outgoing.on('error', () => {
    if (answered) o.socket.destroy()
    else if (!o.socket.destroyed) o.refuse('closed the connection without an answer')
    o.upstream.destroy()
  })
  outgoing.on('upgrade', (answer, upstream: Duplex, upstreamHead: Buffer) => {
    answered = true
    o.socket.off('close', cut)
    // The handshake's Upgrade and Connection go back as they came, the rest as any answer's do
    // (a Set-Cookie loses its Domain here too).
    const handshake: string[] = []
    for (let i = 0; i < answer.rawHeaders.length; i += 2) {
      if (['connection', 'upgrade'].includes(answer.rawHeaders[i]!.toLowerCase())) handshake.push(answer.rawHeaders[i]!, answer.rawHeaders[i + 1]!)
    }
    o.socket.write(headOf(101, answer.statusMessage || 'Switching Protocols', [...handshake, ...o.backHeaders(answer.rawHeaders)]))
    if (upstreamHead.length > 0) o.socket.write(upstreamHead)
    // What the client sent past its head goes after the head, as it would have on one connection.
    if (o.head.length > 0) upstream.write(o.head)
    splice(o.socket, upstream)
  })
  outgoing.on('response', (answer) => {
    answered = true
    const status = answer.statusCode ?? 0
    if (status < 100 || status > 999) {
      answer.destroy()
      cut()
      return o.refuse(`answered with status ${status}`)
    }
    // Its body is read to its end (de-chunked by the parser) and ends with the connection.
    const headers = o.backHeaders(answer.rawHeaders)
    const kept: string[] = []
    for (let i = 0; i < headers.length; i += 2) if (headers[i]!.toLowerCase() !== 'content-length') kept.push(headers[i]!, headers[i + 1]!)
    o.socket.write(headOf(status, answer.statusMessage ?? '', [...kept, 'Connection', 'close']))
    answer.on('error', () => (cut(), o.socket.destroy()))
    answer.on('end', () => {
      o.socket.end()
      o.upstream.destroy()
    })
    answer.pipe(o.socket, { end: false })
  })
  outgoing.end()
}

/** A response head: status line and header lines. The parser that read them refused CR and LF in any of them. */
function headOf(status: number, message: string, raw: string[]): string {
  const lines = [`HTTP/1.1 ${status} ${message}`]
  for (let i = 0; i < raw.length; i += 2) lines.push(`${raw[i]}: ${raw[i + 1]}`)
  return `${lines.join('\r\n')}\r\n\r\n`
}
