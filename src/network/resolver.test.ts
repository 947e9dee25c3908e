import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { once } from 'node:events'
import { connect, createServer } from 'node:net'
import { after, before, describe, it } from 'node:test'
import dnsPacket from 'dns-packet'
import { SandstormError, silentLogger } from '../shared/index.js'
import { closedByServer, openConnections } from '../../test/helpers/connections.js'
import { until } from '../../test/helpers/until.js'
import { filterAnswers, startResolver, type Resolver, type ResolverClient } from './resolver.js'

/**
 * An upstream on 127.0.0.1 that knows a few names and counts what it was asked. Its answers are
 * data only (nothing is sent to them): test hosts' 198.19.0.0/16, and 198.18.255.254 in the
 * sandboxes' own range, which a sandbox may never be pinned to.
 */
async function fakeUpstream(): Promise<{ port: number; asked: string[]; close(): void }> {
  const zone: Record<string, dnsPacket.Answer[]> = {
    'allowed.test': [{ type: 'A', name: 'allowed.test', ttl: 30, data: '198.19.113.10' }],
    'alias.test': [
      { type: 'CNAME', name: 'alias.test', ttl: 30, data: 'target.test' },
      { type: 'A', name: 'target.test', ttl: 30, data: '198.19.113.20' },
      { type: 'A', name: 'unrelated.test', ttl: 30, data: '198.19.113.99' },
    ],
    'forged.test': [{ type: 'A', name: 'forged.test', ttl: 30, data: '198.19.113.40' }],
    'mixed.test': [
      { type: 'A', name: 'mixed.test', ttl: 30, data: '198.19.113.30' },
      { type: 'A', name: 'mixed.test', ttl: 30, data: '198.18.255.254' },
    ],
  }
  const asked: string[] = []
  const answer = (msg: Buffer): Buffer => {
    const q = dnsPacket.decode(msg)
    const question = q.questions![0]!
    asked.push(`${question.type} ${question.name}`)
    return dnsPacket.encode({ type: 'response', id: q.id, questions: q.questions, answers: question.type === 'A' ? (zone[question.name] ?? []) : [] })
  }
  const udp = createSocket('udp4')
  // Forgeries, for forged.test: answers that name another address, one from another port with the
  // id the resolver sent, one from the upstream's port with another id, both before the real one.
  const forger = createSocket('udp4')
  forger.bind(0, '127.0.0.1')
  await once(forger, 'listening')
  udp.on('message', (msg, r) => {
    const q = dnsPacket.decode(msg)
    if (q.questions?.[0]?.name === 'forged.test') {
      const forged = (id: number) => dnsPacket.encode({ type: 'response', id, questions: q.questions, answers: [{ type: 'A', name: 'forged.test', ttl: 30, data: '198.19.66.66' }] })
      forger.send(forged(q.id!), r.port, r.address)
      udp.send(forged(q.id! ^ 1), r.port, r.address)
      setTimeout(() => udp.send(answer(msg), r.port, r.address), 50)
      return
    }
    udp.send(answer(msg), r.port, r.address)
  })
  udp.bind(0, '127.0.0.1')
  await once(udp, 'listening')
  const port = udp.address().port
  const tcp = createServer((s) => s.on('data', (d: Buffer) => {
    const reply = answer(d.subarray(2))
    const head = Buffer.alloc(2)
    head.writeUInt16BE(reply.length)
    s.end(Buffer.concat([head, reply]))
  }))
  tcp.listen(port, '127.0.0.1')
  await once(tcp, 'listening')
  return { port, asked, close: () => (udp.close(), forger.close(), tcp.close()) }
}

/** One query over UDP from `from`; rejects if no answer comes within 10 s. */
async function query(port: number, name: string, type: dnsPacket.RecordType = 'A', from = '127.0.0.1'): Promise<dnsPacket.DecodedPacket> {
  const socket = createSocket('udp4')
  socket.bind(0, from)
  await once(socket, 'listening')
  socket.send(dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] }), port, '127.0.0.1')
  try {
    const [msg] = await once(socket, 'message', { signal: AbortSignal.timeout(10_000) })
    return dnsPacket.decode(msg as Buffer)
  } finally {
    socket.close()
  }
}

function queryTcp(port: number, name: string | Buffer): Promise<dnsPacket.DecodedPacket> {
  return new Promise((resolve, reject) => {
    const q = typeof name === 'string' ? dnsPacket.encode({ type: 'query', id: 8, questions: [{ type: 'A', name }] }) : name
    const head = Buffer.alloc(2)
    head.writeUInt16BE(q.length)
    const s = connect(port, '127.0.0.1', () => s.write(Buffer.concat([head, q])))
    let data = Buffer.alloc(0)
    s.on('data', (d: Buffer) => {
      data = Buffer.concat([data, d])
      if (data.length >= 2 + data.readUInt16BE(0)) {
        s.destroy()
        resolve(dnsPacket.decode(data.subarray(2)))
      }
    })
    s.on('error', reject)
  })
}

/** The response code, as the packet's flags carry it (dns-packet decodes it; its types leave it out). */
const rcode = (p: dnsPacket.DecodedPacket): string => (p as dnsPacket.DecodedPacket & { rcode: string }).rcode

const addresses = (p: dnsPacket.DecodedPacket): string[] => (p.answers ?? []).filter((a) => a.type === 'A').map((a) => (a as { data: string }).data)

describe('the sandbox resolver', () => {
  let upstream: Awaited<ReturnType<typeof fakeUpstream>>
  let resolver: Resolver
  let client: ResolverClient | undefined
  const pins: string[] = []

  before(async () => {
    upstream = await fakeUpstream()
    resolver = await startResolver({ host: '127.0.0.1', upstreams: [`127.0.0.1:${upstream.port}`], clientOf: () => client, logger: silentLogger() })
  })
  after(async () => {
    await resolver.close()
    upstream.close()
  })

  it('passes answers through for a sandbox without a domain policy', async () => {
    client = { allowsName: null, pinnable: () => true, pin: async () => undefined }
    assert.deepEqual(addresses(await query(resolver.udpPort, 'mixed.test')), ['198.19.113.30', '198.18.255.254'])
  })

  it('refuses names outside a domain policy without asking upstream', async () => {
    client = { allowsName: (n) => n === 'allowed.test' || n === 'alias.test' || n === 'mixed.test', pinnable: (a) => !a.startsWith('198.18.'), pin: async (list) => void pins.push(...list.map((p) => p.address)) }
    const before = upstream.asked.length
    const refused = await query(resolver.udpPort, 'secret-data.evil.test')
    assert.equal(rcode(refused), 'REFUSED')
    assert.equal(rcode(await queryTcp(resolver.tcpPort, 'secret-data.evil.test')), 'REFUSED')
    assert.equal(upstream.asked.length, before, 'a refused name went upstream')
  })

  it('answers AAAA empty, follows CNAMEs, strips what may not be pinned, and pins the rest before answering', async () => {
    assert.deepEqual(addresses(await query(resolver.udpPort, 'allowed.test', 'AAAA')), [])
    assert.equal(rcode(await query(resolver.udpPort, 'allowed.test', 'AAAA')), 'NOERROR')
    pins.length = 0
    assert.deepEqual(addresses(await query(resolver.udpPort, 'alias.test')), ['198.19.113.20'], 'the unrelated record is dropped')
    assert.deepEqual(pins, ['198.19.113.20'])
    assert.deepEqual(addresses(await query(resolver.udpPort, 'mixed.test')), ['198.19.113.30'])
    assert.deepEqual(addresses(await queryTcp(resolver.tcpPort, 'allowed.test')), ['198.19.113.10'])
  })

  it('pins an address for ten minutes to an hour, whatever TTL the zone gives', () => {
    const a = (ttl: number, data: string) => ({ type: 'A' as const, name: 'pinned.test', ttl, data })
    const { pins } = filterAnswers('pinned.test', [a(30, '198.19.1.1'), a(604_800, '198.19.1.2')], { pinnable: () => true })
    assert.deepEqual(pins, [{ address: '198.19.1.1', ttlS: 600 }, { address: '198.19.1.2', ttlS: 3600 }])
  })

  it('answers SERVFAIL when the addresses cannot be pinned (the sandbox holds all it may)', async () => {
    const full = { ...client!, pin: async () => Promise.reject(new SandstormError('resource_exhausted', 'the sandbox holds 4096 pinned addresses')) }
    client = full
    assert.equal(rcode(await query(resolver.udpPort, 'allowed.test')), 'SERVFAIL')
    assert.equal(rcode(await queryTcp(resolver.tcpPort, 'allowed.test')), 'SERVFAIL')
  })

  it('takes no answer from upstream that another port sent, or that has another id', async () => {
    client = { allowsName: null, pinnable: () => true, pin: async () => undefined }
    assert.deepEqual(addresses(await query(resolver.udpPort, 'forged.test')), ['198.19.113.40'])
  })

  it('answers a query of many questions with FORMERR and one question, however long their uncompressed names', async () => {
    client = { allowsName: (n) => n === 'allowed.test', pinnable: () => true, pin: async () => undefined }
    // 300 questions: a long name, then 299 compression pointers to it (6 bytes each); echoed
    // uncompressed they would take some 77 KB, past TCP's two-byte length.
    const label = (c: string) => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, c)])
    const name = Buffer.concat([label('a'), label('b'), label('c'), Buffer.from([0])])
    const header = Buffer.from([0, 9, 1, 0, 1, 44, 0, 0, 0, 0, 0, 0])
    const pointer = Buffer.from([0xc0, 12, 0, 1, 0, 1])
    const many = Buffer.concat([header, name, Buffer.from([0, 1, 0, 1]), ...Array.from({ length: 299 }, () => pointer)])
    const reply = await queryTcp(resolver.tcpPort, many)
    assert.equal(rcode(reply), 'FORMERR')
    assert.equal(reply.questions?.length, 1)
    assert.deepEqual(addresses(await queryTcp(resolver.tcpPort, 'allowed.test')), ['198.19.113.10'], 'the resolver answers on')
  })

  it('takes a query sent a byte at a time, and holds a sandbox to 16 TCP connections', async () => {
    client = { allowsName: (n) => n === 'allowed.test', pinnable: () => true, pin: async () => undefined }
    const q = dnsPacket.encode({ type: 'query', id: 11, questions: [{ type: 'A', name: 'allowed.test' }] })
    const framed = Buffer.concat([Buffer.from([q.length >> 8, q.length & 255]), q])
    const slow = connect({ port: resolver.tcpPort, host: '127.0.0.1', noDelay: true })
    const reply = new Promise<dnsPacket.DecodedPacket>((resolve, reject) => {
      let data = Buffer.alloc(0)
      slow.on('data', (d: Buffer) => {
        data = Buffer.concat([data, d])
        if (data.length >= 2 && data.length >= 2 + data.readUInt16BE(0)) resolve(dnsPacket.decode(data.subarray(2)))
      })
      slow.on('error', reject)
    })
    await once(slow, 'connect')
    for (const byte of framed) {
      slow.write(Buffer.from([byte]))
      await new Promise((r) => setImmediate(r))
    }
    assert.deepEqual(addresses(await reply), ['198.19.113.10'])

    // 15 more idle connections of this source, 16 in all: the next one is closed.
    const held = [slow]
    try {
      await openConnections(resolver.tcpPort, 15, held)
      assert.equal(await closedByServer(resolver.tcpPort, held), true, 'a 17th connection of one source stayed open')
      const other = connect({ port: resolver.tcpPort, host: '127.0.0.1', localAddress: '127.0.0.2' })
      held.push(other)
      await once(other, 'connect')
      assert.equal(other.destroyed, false)
    } finally {
      for (const s of held) s.destroy()
    }
  })

  it('refuses every query of a source it does not know', async () => {
    client = undefined
    assert.equal(rcode(await query(resolver.udpPort, 'allowed.test')), 'REFUSED')
  })
})

describe('name lookups for the HTTP and TLS checks', () => {
  it('returns the addresses along the CNAME chain', async () => {
    const upstream = await fakeUpstream()
    const resolver = await startResolver({ host: '127.0.0.1', upstreams: [`127.0.0.1:${upstream.port}`], clientOf: () => undefined, logger: silentLogger() })
    try {
      assert.deepEqual((await resolver.lookup('alias.test')).map((r) => r.address), ['198.19.113.20'])
    } finally {
      await resolver.close()
      upstream.close()
    }
  })
})

describe('the resolver under a flood of queries', () => {
  it('holds a sandbox to its share of queries in flight, and the host to its total: the rest get SERVFAIL at once', async () => {
    // An upstream that answers only when the test says: every query forwarded holds its socket till then.
    const upstream = createSocket('udp4')
    const held: { msg: Buffer; port: number; address: string }[] = []
    let received = 0
    upstream.on('message', (msg, r) => {
      received++
      held.push({ msg, port: r.port, address: r.address })
    })
    const release = (): void => {
      for (const q of held.splice(0)) {
        const query = dnsPacket.decode(q.msg)
        upstream.send(dnsPacket.encode({ type: 'response', id: query.id, questions: query.questions, answers: [] }), q.port, q.address)
      }
    }
    upstream.bind(0, '127.0.0.1')
    await once(upstream, 'listening')
    const client: ResolverClient = { allowsName: null, pinnable: () => true, pin: async () => undefined }
    const resolver = await startResolver({ host: '127.0.0.1', upstreams: [`127.0.0.1:${upstream.address().port}`], clientOf: () => client, maxQueriesPerClient: 4, maxQueries: 6, logger: silentLogger() })
    const waitFor = (what: string, check: () => boolean): Promise<true> => until(what, async () => check(), 5000)
    try {
      // Ten at once from one sandbox: four go upstream and wait there; six are answered at once.
      const answered: string[] = []
      const first = Array.from({ length: 10 }, (_, i) => query(resolver.udpPort, `flood-${i}.test`).then((p) => (answered.push(rcode(p)), p)))
      await waitFor('six answers and four queries upstream', () => answered.length >= 6 && received >= 4)
      assert.deepEqual(answered, Array(6).fill('SERVFAIL'))
      assert.equal(received, 4, 'queries past the sandbox\'s share went upstream')
      // Another sandbox still gets the two left of the host's total; its third gets SERVFAIL.
      const others: string[] = []
      const second = Array.from({ length: 3 }, (_, i) => query(resolver.udpPort, `other-${i}.test`, 'A', '127.0.0.2').then((p) => (others.push(rcode(p)), p)))
      await waitFor('one answer and two more queries upstream', () => others.length >= 1 && received >= 6)
      assert.deepEqual(others, ['SERVFAIL'])
      assert.equal(received, 6)
      // Once the upstream answers the held ones, the shares are free again.
      release()
      await Promise.all([...first, ...second])
      const later = query(resolver.udpPort, 'after.test')
      await waitFor('the next query upstream', () => received >= 7)
      release()
      assert.equal(rcode(await later), 'NOERROR')
    } finally {
      await resolver.close()
      upstream.close()
    }
  })
})
