/**
 * The resolver the agent serves its sandboxes on the gateway (UDP and TCP; nftables steers port 53
 * here). It forwards to the host's resolvers. A sandbox whose policy names domains gets answers
 * for those names only: any other name is refused without a query upstream (so DNS is no way
 * out), AAAA and HTTPS/SVCB records are answered empty (sandboxes have no IPv6, and address hints
 * would bypass the pins), and the addresses an allowed name resolves to are pinned in nftables for
 * that sandbox before the answer goes out. A CNAME chain is followed, but its targets are not
 * allowed names themselves: asking for one, or naming one in TLS or HTTP, is refused.
 */
import { randomInt } from 'node:crypto'
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { readFileSync } from 'node:fs'
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net'
import dnsPacket from 'dns-packet'
import type { Logger } from '../shared/index.js'
import { capPerSource } from './source-caps.js'

/** What the resolver needs to know of the sandbox that asks. */
export interface ResolverClient {
  /** null: no domain policy, answers pass as they come. Else: may this name be resolved? */
  allowsName: ((name: string) => boolean) | null
  /** May the sandbox be pinned to this address (not never-reachable, not private unless allowed)? */
  pinnable(address: string): boolean
  /** Pins addresses for the sandbox; the answer waits for it. */
  pin(addresses: { address: string; ttlS: number }[]): Promise<void>
}

/** Options of startResolver. */
export interface ResolverOptions {
  /** The address to listen on (the gateway). */
  host: string
  /** Upstream resolvers (`a.b.c.d` or `a.b.c.d:port`). @default the nameservers of /etc/resolv.conf */
  upstreams?: string[]
  /** The sandbox that has this source address, or undefined. */
  clientOf(address: string): ResolverClient | undefined
  /** Queries of one sandbox (by source address) being answered at once; more get SERVFAIL. @default 32 */
  maxQueriesPerClient?: number
  /** Queries of all sandboxes being answered at once (each holds an upstream socket); more get SERVFAIL. @default 1024 */
  maxQueries?: number
  logger: Logger
}

/** A running resolver. */
export interface Resolver {
  udpPort: number
  tcpPort: number
  /** Addresses of `name` from upstream (A records along its CNAME chain), with their TTLs. */
  lookup(name: string): Promise<{ address: string; ttlS: number }[]>
  /** Ends every TCP connection from a sandbox's address (its policy changed, or it is gone). */
  closeFrom(address: string): void
  close(): Promise<void>
}

const upstreamTimeoutMs = 2000
/** Pins outlive short TTLs: clients cache answers longer than they are told, and a pin is only ever an allowed name's address. */
const minPinS = 600
/** And at most this long, whatever TTL the zone gives: the address may serve another name by then. */
const maxPinS = 3600
const maxTcpMessage = 65535
/** How long a TCP connection may be idle, and how long one message may take to arrive. */
const tcpIdleMs = 10_000
/** TCP connections one sandbox holds at once. */
const tcpPerSource = 16

/** The IPv4 nameservers of /etc/resolv.conf, else none. */
export function systemNameservers(file = '/etc/resolv.conf'): string[] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .map((l) => /^\s*nameserver\s+([0-9.]+)\s*$/.exec(l)?.[1])
      .filter((a): a is string => a !== undefined)
  } catch {
    return []
  }
}

const hostPort = (upstream: string): { host: string; port: number } => {
  const [host, port] = upstream.split(':')
  return { host: host!, port: port ? Number(port) : 53 }
}

/** Normalizes a query name: lower case, no trailing dot. */
const nameOf = (name: string): string => name.toLowerCase().replace(/\.$/, '')

/** A message's first question as `type class name` (the name normalized), or '' when it has none or does not decode. */
function questionOf(message: Buffer): string {
  try {
    const q = dnsPacket.decode(message).questions?.[0]
    return q ? `${q.type} ${q.class} ${nameOf(q.name)}` : ''
  } catch {
    return ''
  }
}

/** Starts the resolver on `host`, ports picked by the kernel. */
export async function startResolver(options: ResolverOptions): Promise<Resolver> {
  const log = options.logger.child({ component: 'resolver' })
  const upstreams = (options.upstreams && options.upstreams.length > 0 ? options.upstreams : systemNameservers()).map(hostPort)
  if (upstreams.length === 0) log.warn('no upstream resolver (none given, none in /etc/resolv.conf): sandboxes get SERVFAIL for every name')

  /**
   * Asks the upstreams in turn over UDP; the first answer wins. Only an answer that could be the
   * upstream's counts: from its address and port (the socket is connected), with an id of ours
   * (the sandbox's own id is known to the sandbox, and to whoever it tells), to the same question.
   * Anything else is a forgery aimed at the socket's port, and is dropped.
   */
  async function askUdp(query: Buffer): Promise<Buffer | undefined> {
    const asked = questionOf(query)
    for (const up of upstreams) {
      const id = randomInt(0x10000)
      const sent = Buffer.from(query)
      sent.writeUInt16BE(id, 0)
      const answer = await new Promise<Buffer | undefined>((resolve) => {
        const socket = createSocket('udp4')
        const done = (value: Buffer | undefined): void => {
          clearTimeout(timer)
          socket.close()
          resolve(value)
        }
        const timer = setTimeout(() => done(undefined), upstreamTimeoutMs)
        socket.on('error', () => done(undefined))
        socket.on('message', (msg) => {
          if (msg.length < 12 || msg.readUInt16BE(0) !== id || questionOf(msg) !== asked) return
          const back = Buffer.from(msg)
          back.writeUInt16BE(query.readUInt16BE(0), 0)
          done(back)
        })
        socket.connect(up.port, up.host, () => socket.send(sent))
      })
      if (answer) return answer
    }
    return undefined
  }

  /** Asks the upstreams in turn over TCP. */
  async function askTcp(query: Buffer): Promise<Buffer | undefined> {
    for (const up of upstreams) {
      const answer = await new Promise<Buffer | undefined>((resolve) => {
        const socket = connect(up.port, up.host)
        let data = Buffer.alloc(0)
        const done = (value: Buffer | undefined): void => {
          socket.destroy()
          resolve(value)
        }
        socket.setTimeout(upstreamTimeoutMs, () => done(undefined))
        socket.on('error', () => done(undefined))
        socket.on('data', (chunk: Buffer) => {
          data = Buffer.concat([data, chunk])
          if (data.length >= 2 && data.length >= 2 + data.readUInt16BE(0)) done(data.subarray(2, 2 + data.readUInt16BE(0)))
        })
        const head = Buffer.alloc(2)
        head.writeUInt16BE(query.length, 0)
        socket.end(Buffer.concat([head, query]))
      })
      if (answer) return answer
    }
    return undefined
  }

  const perClient = options.maxQueriesPerClient ?? 32
  const overall = options.maxQueries ?? 1024
  /** Queries being answered, by source address, and in all. */
  const inFlight = new Map<string, number>()
  let inFlightTotal = 0

  /**
   * An answer to `query` with no records and this rcode (0 NOERROR, 1 FORMERR, 2 SERVFAIL, 5
   * REFUSED). It repeats the first question only: a query of hundreds of compressed questions
   * would come back uncompressed, past what TCP's two-byte length can frame.
   */
  const empty = (query: dnsPacket.DecodedPacket, rcode: number): Buffer =>
    dnsPacket.encode({
      type: 'response',
      id: query.id,
      flags: ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | dnsPacket.RECURSION_AVAILABLE | rcode,
      questions: (query.questions ?? []).slice(0, 1),
    })

  /**
   * The answer for one query of a sandbox at `source`, asked upstream over `ask`. A sandbox that
   * already has `perClient` queries on the way, or a host with `overall`, gets SERVFAIL at once:
   * a flood of queries costs the others neither sockets nor memory.
   */
  async function answer(raw: Buffer, source: string, ask: (q: Buffer) => Promise<Buffer | undefined>): Promise<Buffer | undefined> {
    let query: dnsPacket.DecodedPacket
    try {
      query = dnsPacket.decode(raw)
    } catch {
      return undefined
    }
    const client = options.clientOf(source)
    if (!client) return empty(query, 5)
    // One question per query, as every resolver asks (RFC 9619): the answer is for one question.
    if (query.questions?.length !== 1) return empty(query, 1)
    const held = inFlight.get(source) ?? 0
    if (held >= perClient || inFlightTotal >= overall) {
      log.debug({ source, held, inFlight: inFlightTotal }, 'a query over the resolver\'s limits got SERVFAIL')
      return empty(query, 2)
    }
    inFlight.set(source, held + 1)
    inFlightTotal++
    try {
      return await answerFor(client, query, raw, source, ask)
    } finally {
      inFlightTotal--
      const left = (inFlight.get(source) ?? 1) - 1
      if (left > 0) inFlight.set(source, left)
      else inFlight.delete(source)
    }
  }

  async function answerFor(client: ResolverClient, query: dnsPacket.DecodedPacket, raw: Buffer, source: string, ask: (q: Buffer) => Promise<Buffer | undefined>): Promise<Buffer> {
    if (!client.allowsName) return (await ask(raw)) ?? empty(query, 2)
    const question = query.questions![0]!
    const name = nameOf(question.name)
    if (!client.allowsName(name)) {
      log.debug({ source, name }, 'refused a name the sandbox may not resolve')
      return empty(query, 5)
    }
    // No IPv6 route, and no address hints that would go around the pins.
    if (question.type === 'AAAA' || question.type === ('UNKNOWN_64' as string) || question.type === ('UNKNOWN_65' as string)) return empty(query, 0)
    const reply = await ask(raw)
    if (!reply) return empty(query, 2)
    let decoded: dnsPacket.DecodedPacket
    try {
      decoded = dnsPacket.decode(reply)
    } catch {
      return empty(query, 2)
    }
    const { kept, pins } = filterAnswers(name, decoded.answers ?? [], client)
    try {
      await client.pin(pins)
    } catch (err) {
      // An answer whose addresses could not be pinned would only lead to refused connections.
      log.debug({ err, source, name }, 'could not pin an answer\'s addresses; the sandbox gets SERVFAIL')
      return empty(query, 2)
    }
    return dnsPacket.encode({ ...decoded, answers: kept, authorities: [], additionals: (decoded.additionals ?? []).filter((r) => r.type === 'OPT') })
  }

  const udp: UdpSocket = createSocket('udp4')
  udp.on('message', (msg, rinfo) => {
    answer(msg, rinfo.address, askUdp)
      .then((reply) => reply && udp.send(reply, rinfo.port, rinfo.address))
      .catch((err: unknown) => log.error({ err, source: rinfo.address }, 'a DNS query failed'))
  })
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject)
    udp.bind(0, options.host, () => {
      udp.off('error', reject)
      resolve()
    })
  })
  udp.on('error', (err) => log.error({ err }, 'the resolver\'s UDP socket failed'))

  const connections = new Set<Socket>()
  const tcp: Server = createServer((socket) => {
    connections.add(socket)
    socket.on('close', () => connections.delete(socket))
    socket.on('error', () => undefined)
    socket.setTimeout(tcpIdleMs, () => socket.destroy())
    // The bytes of the message being received, joined once it is whole (joined per chunk, a
    // message sent a byte at a time cost the square of its length); it must be whole in tcpIdleMs.
    let chunks: Buffer[] = []
    let bytes = 0
    let deadline: NodeJS.Timeout | undefined
    socket.on('close', () => clearTimeout(deadline))
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      bytes += chunk.length
      if (bytes > maxTcpMessage + 2) {
        socket.destroy()
        return
      }
      deadline ??= setTimeout(() => socket.destroy(), tcpIdleMs)
      while (bytes >= 2) {
        if (chunks[0]!.length < 2) chunks = [Buffer.concat(chunks, bytes)]
        const whole = 2 + chunks[0]!.readUInt16BE(0)
        if (bytes < whole) break
        const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, bytes)
        const msg = data.subarray(2, whole)
        const rest = data.subarray(whole)
        chunks = rest.length > 0 ? [rest] : []
        bytes = rest.length
        clearTimeout(deadline)
        deadline = bytes > 0 ? setTimeout(() => socket.destroy(), tcpIdleMs) : undefined
        answer(msg, socket.remoteAddress?.replace(/^::ffff:/, '') ?? '', askTcp)
          .then((reply) => {
            if (!reply || socket.destroyed) return
            // Records re-encoded without compression can outgrow the length prefix: such an answer is dropped.
            if (reply.length > maxTcpMessage) return void log.warn({ bytes: reply.length }, 'a DNS answer too long for TCP was dropped')
            const head = Buffer.alloc(2)
            head.writeUInt16BE(reply.length, 0)
            socket.write(Buffer.concat([head, reply]))
          })
          .catch((err: unknown) => log.error({ err }, 'a DNS query over TCP failed'))
      }
    })
  })
  // Each sandbox holds a few at most (a stub resolver opens one at a time); this bounds them all together.
  const tcpSources = capPerSource(tcp, tcpPerSource)
  tcp.maxConnections = 1024
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject)
    tcp.listen(0, options.host, () => {
      tcp.off('error', reject)
      resolve()
    })
  })

  return {
    udpPort: (udp.address() as AddressInfo).port,
    tcpPort: (tcp.address() as AddressInfo).port,
    async lookup(name) {
      const query = dnsPacket.encode({ type: 'query', id: Math.floor(Math.random() * 65535), flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] })
      const reply = await askUdp(query)
      if (!reply) return []
      const answers = dnsPacket.decode(reply).answers ?? []
      return chainAddresses(nameOf(name), answers)
    },
    closeFrom: (address) => tcpSources.closeFrom(address),
    async close() {
      udp.close()
      for (const socket of connections) socket.destroy()
      await new Promise<void>((resolve) => tcp.close(() => resolve()))
    },
  }
}

/** The names of `name`'s CNAME chain in these answers, `name` first. */
function chainOf(name: string, answers: dnsPacket.Answer[]): Set<string> {
  const names = new Set([name])
  // Answers list the chain in order; a few passes cover any order without looping on a cycle.
  for (let pass = 0; pass < 8; pass++) {
    const before = names.size
    for (const a of answers) if (a.type === 'CNAME' && names.has(nameOf(a.name))) names.add(nameOf((a as { data: string }).data))
    if (names.size === before) break
  }
  return names
}

/** A records along `name`'s CNAME chain. */
function chainAddresses(name: string, answers: dnsPacket.Answer[]): { address: string; ttlS: number }[] {
  const chain = chainOf(name, answers)
  return answers.filter((a) => a.type === 'A' && chain.has(nameOf(a.name))).map((a) => ({ address: (a as { data: string }).data, ttlS: (a as { ttl?: number }).ttl ?? 0 }))
}

/**
 * What of an answer reaches a sandbox under a domain policy: the CNAMEs and A records of the
 * asked name's chain, minus addresses it may never be pinned to; the rest is dropped. Returns
 * the addresses to pin.
 */
export function filterAnswers(name: string, answers: dnsPacket.Answer[], client: Pick<ResolverClient, 'pinnable'>): { kept: dnsPacket.Answer[]; pins: { address: string; ttlS: number }[] } {
  const chain = chainOf(name, answers)
  const kept: dnsPacket.Answer[] = []
  const pins: { address: string; ttlS: number }[] = []
  for (const a of answers) {
    if (!chain.has(nameOf(a.name))) continue
    if (a.type === 'CNAME') kept.push(a)
    const address = a.type === 'A' ? (a as { data: string }).data : undefined
    if (address && client.pinnable(address)) {
      kept.push(a)
      pins.push({ address, ttlS: Math.min(maxPinS, Math.max(minPinS, (a as { ttl?: number }).ttl ?? 0)) })
    }
  }
  return { kept, pins }
}
