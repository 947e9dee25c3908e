/**
 * The far end of a test "internet": run inside its network namespace by internet.ts (never on its
 * own). It serves, on every address of the namespace:
 *   - DNS on 53 (UDP and TCP), authoritative for the test zone; it counts the names it was asked;
 *   - HTTP on 80 and 8080, HTTPS on 443 (a certificate of the test's CA for the zone's names); each
 *     answers `<local address> <Host or server name> <method> <path>`; /bytes/N sends N bytes;
 *   - a UDP counter on 9999 (the source address and payload of every datagram);
 *   - GET /stats on 8080 for the test: the names asked and the datagrams seen.
 * Argument: JSON { zone: { name: { A?: string[], CNAME?: string } }, certPem, keyPem }.
 */
import { createSocket } from 'node:dgram'
import { createServer as createHttp, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createHttps } from 'node:https'
import { createServer as createTcp } from 'node:net'
import { networkInterfaces } from 'node:os'
import dnsPacket from 'dns-packet'

interface Config {
  zone: Record<string, { A?: string[]; CNAME?: string }>
  certPem: string
  keyPem: string
}

// The test runner runs every file under test/ as a test: without the config it is one, and does nothing.
const configText = process.env.SANDSTORM_INTERNET_HOST === '1' ? process.argv[2] : undefined
if (configText === undefined) process.exit(0)
const config = JSON.parse(configText) as Config
const asked: string[] = []
const datagrams: string[] = []

function answer(query: Buffer): Buffer {
  const q = dnsPacket.decode(query)
  const question = q.questions?.[0]
  const name = (question?.name ?? '').toLowerCase()
  asked.push(`${question?.type ?? '?'} ${name}`)
  const answers: dnsPacket.Answer[] = []
  let current = name
  for (let hops = 0; hops < 8; hops++) {
    const record = config.zone[current]
    if (!record) break
    if (record.CNAME) {
      answers.push({ type: 'CNAME', name: current, ttl: 30, data: record.CNAME })
      current = record.CNAME
      continue
    }
    if (question?.type === 'A') for (const a of record.A ?? []) answers.push({ type: 'A', name: current, ttl: 30, data: a })
    break
  }
  const known = config.zone[name] !== undefined
  return dnsPacket.encode({
    type: 'response',
    id: q.id,
    flags: dnsPacket.AUTHORITATIVE_ANSWER | (known ? 0 : 3),
    questions: q.questions,
    answers,
  })
}

// One socket per address, as a real server on a host of several addresses has: an answer comes
// from the address asked (a socket on 0.0.0.0 answers from the link's first one, and a resolver
// that takes answers only from its upstream drops those).
for (const address of Object.values(networkInterfaces()).flat()) {
  if (address?.family !== 'IPv4') continue
  const udp = createSocket('udp4')
  udp.on('message', (msg, rinfo) => udp.send(answer(msg), rinfo.port, rinfo.address))
  udp.bind(53, address.address)
}

const tcpDns = createTcp((socket) => {
  let data = Buffer.alloc(0)
  socket.on('error', () => undefined)
  socket.on('data', (chunk: Buffer) => {
    data = Buffer.concat([data, chunk])
    while (data.length >= 2 && data.length >= 2 + data.readUInt16BE(0)) {
      const reply = answer(data.subarray(2, 2 + data.readUInt16BE(0)))
      data = data.subarray(2 + data.readUInt16BE(0))
      const head = Buffer.alloc(2)
      head.writeUInt16BE(reply.length, 0)
      socket.write(Buffer.concat([head, reply]))
    }
  })
})
tcpDns.listen(53)

const counter = createSocket('udp4')
counter.on('message', (msg, rinfo) => datagrams.push(`${rinfo.address} ${msg.toString('utf8')}`))
counter.bind(9999)

function serve(req: IncomingMessage, res: ServerResponse, name: string): void {
  const url = new URL(req.url ?? '/', 'http://x')
  if (url.pathname === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ asked, datagrams }))
    return
  }
  const bytes = /^\/bytes\/(\d+)$/.exec(url.pathname)?.[1]
  if (bytes) {
    const total = Number(bytes)
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) })
    const chunk = Buffer.alloc(Math.min(total, 1 << 16), 120)
    let sent = 0
    const more = (): void => {
      while (sent < total) {
        const part = chunk.subarray(0, Math.min(chunk.length, total - sent))
        sent += part.length
        if (!res.write(part)) return void res.once('drain', more)
      }
      res.end()
    }
    more()
    return
  }
  res.writeHead(200, { 'content-type': 'text/plain' }).end(`${req.socket.localAddress?.replace(/^::ffff:/, '')} ${name} ${req.method} ${url.pathname}\n`)
}

for (const port of [80, 8080]) {
  const server = createHttp((req, res) => serve(req, res, req.headers.host ?? ''))
  // /echo switches to a raw echo (101), after a line that names the Host; any other upgrade is
  // answered as a plain request, on a connection that goes on serving the requests behind it.
  server.on('upgrade', (req: IncomingMessage, socket: import('node:net').Socket, head: Buffer) => {
    if (req.url === '/echo') {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\nswitched for ${req.headers.host ?? ''}\n`)
      if (head.length > 0) socket.write(head)
      socket.pipe(socket)
      return
    }
    const body = `${req.headers.host ?? ''} ${req.method} ${req.url}\n`
    socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
    if (head.length > 0) socket.unshift(head)
    server.emit('connection', socket)
  })
  server.listen(port)
}
createHttps({ cert: config.certPem, key: config.keyPem }, (req, res) => {
  const servername = (req.socket as import('node:tls').TLSSocket).servername || ''
  serve(req, res, `${servername}|${req.headers.host ?? ''}`)
}).listen(443)

process.stdout.write('ready\n')
