/**
 * Egress of runc sandboxes under their policies, against a test internet (helpers/internet.ts) on
 * 198.19.X.0/24: its lower half counts as public (the agent's --public-cidr), its upper half is a
 * private LAN. Every check runs inside a sandbox, as an attacker's program would; ranges that no
 * test may send to (link-local, multicast, other private ranges) are checked in the ruleset.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type AddressInfo, type Server } from 'node:net'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { execa } from 'execa'
import { ConflictError, InvalidArgumentError, Sandbox, type SandboxCreateOptions } from '@sandstorm/sdk'
import { createTestInternet, type TestInternet } from './helpers/internet.js'
import { createProbed, runProbe, sandboxAddress } from './helpers/net-probe.js'
import { sh } from './helpers/sandbox-shell.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false

describe('network egress', { skip, timeout: 300_000 }, () => {
  let net: TestInternet
  let stack: Stack
  let hostServer: Server
  let hostPort: number
  const made: Sandbox[] = []

  const create = async (network?: SandboxCreateOptions['network']): Promise<Sandbox> => {
    const sbx = await createProbed(stack.conn, net.caPem, network)
    made.push(sbx)
    return sbx
  }

  before(async () => {
    net = await createTestInternet()
    stack = await startStack({ network: { publicCidrs: [net.cidr], dnsUpstreams: [net.addresses.dns] } })
    hostServer = createServer((s) => s.end('host'))
    hostServer.listen(0, '0.0.0.0')
    await once(hostServer, 'listening')
    hostPort = (hostServer.address() as AddressInfo).port
  })
  after(async () => {
    for (const s of made) await s.kill().catch(() => undefined)
    await stack?.close()
    await net?.remove()
    hostServer?.close()
  })

  it('reaches the public internet by default, by name and by address, over HTTP and HTTPS', async () => {
    const sbx = await create()
    assert.deepEqual(await runProbe(sbx, 'http', 'http://allowed.test/'), ['OK', `${net.addresses.allowed} allowed.test GET /`])
    assert.deepEqual(await runProbe(sbx, 'http', 'https://denied.test/'), ['OK', `${net.addresses.denied} denied.test|denied.test GET /`])
    assert.equal((await runProbe(sbx, 'tcp', net.addresses.other, '8080'))[0], 'OK')
    const resolv = await sh(sbx, 'cat /etc/resolv.conf')
    assert.match(resolv.stdout, /^nameserver 198\.18\.0\.1$/m)
  })

  it('with network "none" has only lo and reaches nothing', async () => {
    const sbx = await create('none')
    assert.equal((await runProbe(sbx, 'tcp', net.addresses.allowed, '80'))[0], 'FAIL')
    assert.equal((await sh(sbx, 'cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " "')).stdout.trim(), 'lo')
  })

  it('never reaches the host (its addresses, the gateway but for DNS) or another sandbox', async () => {
    const sbx = await create()
    const other = await create()
    const otherAddress = await sandboxAddress(other)
    await sh(other, 'setsid python3 -m http.server 7000 >/dev/null 2>&1 &')
    // From the host the other sandbox answers: it is the sandbox that refuses, not a missing server.
    await until('the other sandbox serving', async () => execa('python3', ['-c', `import socket; socket.create_connection(('${otherAddress}', 7000), timeout=2)`], { reject: false }).then((r) => r.exitCode === 0))
    const hostAddresses = Object.values(networkInterfaces()).flat().filter((a) => a && a.family === 'IPv4' && !a.internal).map((a) => a!.address)
    for (const address of [...new Set(['198.18.0.1', net.hostSide, ...hostAddresses])]) {
      const [word, detail] = await runProbe(sbx, 'tcp', address, String(hostPort))
      assert.equal(word, 'FAIL', `the host reached at ${address}: ${detail}`)
    }
    assert.equal((await runProbe(sbx, 'tcp', otherAddress, '7000'))[0], 'FAIL', 'another sandbox was reached')
    assert.equal((await runProbe(sbx, 'resolve', 'allowed.test'))[0], 'OK', 'DNS to the gateway works')
  })

  it('refuses private ranges unless allowOut names them', async () => {
    const open = await create()
    assert.equal((await runProbe(open, 'tcp', net.addresses.lan, '8080'))[0], 'FAIL', 'a private address was reached under the default policy')
    assert.equal((await runProbe(open, 'resolve', 'lan.test'))[1], net.addresses.lan, 'names of private addresses resolve; only the connection is refused')
    const named = await create({ allowOut: [`${net.addresses.lan}/32`] })
    assert.equal((await runProbe(named, 'tcp', net.addresses.lan, '8080'))[0], 'OK')
  })

  it('puts allowOut before denyOut, for addresses and CIDRs', async () => {
    const denyOne = await create({ denyOut: [net.addresses.denied] })
    assert.equal((await runProbe(denyOne, 'tcp', net.addresses.denied, '80'))[0], 'FAIL')
    assert.equal((await runProbe(denyOne, 'tcp', net.addresses.allowed, '80'))[0], 'OK')
    const onlyOne = await create({ allowOut: [net.addresses.allowed], denyOut: ['0.0.0.0/0'] })
    assert.equal((await runProbe(onlyOne, 'tcp', net.addresses.allowed, '80'))[0], 'OK')
    assert.equal((await runProbe(onlyOne, 'tcp', net.addresses.other, '80'))[0], 'FAIL')
    const none = await create({ allowInternetAccess: false })
    assert.equal((await runProbe(none, 'tcp', net.addresses.allowed, '80'))[0], 'FAIL')
    // With no internet, no name resolves either, and none is asked upstream: a name carries data.
    const secret = `exfil-${Date.now()}.allowed.test`
    assert.equal((await runProbe(none, 'dns', secret, '198.18.0.1', 'udp'))[0], 'RCODE5')
    assert.equal((await runProbe(none, 'resolve', 'allowed.test'))[0], 'FAIL')
    assert.ok(!(await net.stats()).asked.some((q) => q.includes(secret)), 'a sandbox without internet had a name asked upstream')
    // Nor under deny-all with addresses allowed but no name: the resolver would carry names, and
    // answers of any type, past the policy.
    const carried = `exfil-${Date.now()}.allowed.test`
    assert.equal((await runProbe(onlyOne, 'dns', carried, '198.18.0.1', 'udp', '16'))[0], 'RCODE5')
    assert.equal((await runProbe(onlyOne, 'resolve', 'allowed.test'))[0], 'FAIL')
    assert.ok(!(await net.stats()).asked.some((q) => q.includes(carried)), 'a sandbox allowed addresses only had a name asked upstream')
  })

  it('ends a TLS connection the name check let through once the policy no longer allows its name', async () => {
    // Past the server name, the check splices bytes: nothing in the firewall sees that connection again.
    const sbx = await create({ allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'] })
    const held = runProbe(sbx, 'held', net.addresses.allowed, '443', '/tmp/go', 'allowed.test')
    await until('the held TLS connection to be open', async () => (await sh(sbx, 'test -e /tmp/go.ready && echo yes || echo no')).stdout === 'yes\n')
    await sbx.updateNetwork({ denyOut: ['0.0.0.0/0'] })
    await sh(sbx, 'touch /tmp/go')
    assert.equal((await held)[0], 'FAIL', 'a TLS connection let through by its name carried data after the policy dropped the name')
  })

  it('changes a running sandbox\'s policy at once, and keeps it on a bad update', async () => {
    const sbx = await create()
    assert.equal((await runProbe(sbx, 'tcp', net.addresses.allowed, '80'))[0], 'OK')
    // A connection opened while it was allowed: the update ends it too, not only new ones.
    const held = runProbe(sbx, 'held', net.addresses.allowed, '80', '/tmp/go')
    await until('the held connection to be open', async () => (await sh(sbx, 'test -e /tmp/go.ready && echo yes || echo no')).stdout === 'yes\n')
    await sbx.updateNetwork({ denyOut: ['0.0.0.0/0'] })
    await sh(sbx, 'touch /tmp/go')
    assert.equal((await held)[0], 'FAIL', 'a connection opened before the update still carries data after it')
    assert.equal((await runProbe(sbx, 'tcp', net.addresses.allowed, '80'))[0], 'FAIL')
    await assert.rejects(sbx.updateNetwork({ allowOut: ['allowed.test'] }), (err: unknown) => err instanceof InvalidArgumentError && /denyOut to contain 0\.0\.0\.0\/0/.test(err.message))
    assert.deepEqual((await sbx.getInfo()).network, { allowOut: [], denyOut: ['0.0.0.0/0'], allowPublicTraffic: true })
    await sbx.updateNetwork({})
    assert.equal((await runProbe(sbx, 'tcp', net.addresses.allowed, '80'))[0], 'OK')
    const none = await create('none')
    await assert.rejects(none.updateNetwork({ denyOut: ['0.0.0.0/0'] }), ConflictError)
  })

  it('holds a domain policy against every way around it', async () => {
    const sbx = await create({ allowOut: ['allowed.test', '*.allowed.test', 'alias.test', 'never.test', 'host.test'], denyOut: ['0.0.0.0/0'] })
    const gateway = '198.18.0.1'
    assert.deepEqual(await runProbe(sbx, 'http', 'http://allowed.test/'), ['OK', `${net.addresses.allowed} allowed.test GET /`])
    assert.deepEqual(await runProbe(sbx, 'http', 'https://www.allowed.test/'), ['OK', `${net.addresses.allowed} www.allowed.test|www.allowed.test GET /`])
    // A denied name does not resolve, and is never asked upstream (DNS is no way out).
    const secret = `exfil-${Date.now()}.denied.test`
    assert.equal((await runProbe(sbx, 'resolve', 'denied.test'))[0], 'FAIL')
    assert.equal((await runProbe(sbx, 'dns', secret, gateway, 'tcp'))[0], 'RCODE5', 'DNS over TCP to the sandbox resolver refuses it too')
    assert.ok(!(await net.stats()).asked.some((q) => q.includes(secret)), 'a refused name reached the upstream resolver')
    // Only TCP reaches an allowed name's address: a datagram (QUIC on 443, say) would carry any
    // server name past the checks to an address that serves many. The HTTP request after it is
    // the barrier: the datagram would have come first.
    const datagrams = (await net.stats()).datagrams.length
    assert.equal((await runProbe(sbx, 'udp', net.addresses.allowed, '9999'))[0], 'SENT')
    assert.deepEqual(await runProbe(sbx, 'http', 'http://allowed.test/'), ['OK', `${net.addresses.allowed} allowed.test GET /`])
    assert.equal((await net.stats()).datagrams.length, datagrams, "a datagram reached an allowed name's address")
    // An IP literal of a host no allowed name resolved to, on any port.
    assert.equal((await runProbe(sbx, 'tcp', net.addresses.other, '8080'))[0], 'FAIL')
    assert.deepEqual(await runProbe(sbx, 'http', `http://${net.addresses.other}/`), ['HTTP', '403'])
    // Another DNS server, over UDP and TCP.
    assert.equal((await runProbe(sbx, 'dns', 'denied.test', net.addresses.dns, 'udp'))[0], 'FAIL')
    assert.equal((await runProbe(sbx, 'dns', 'denied.test', net.addresses.dns, 'tcp'))[0], 'FAIL')
    // An allowed name's address with another name in Host or in TLS's server name.
    assert.deepEqual(await runProbe(sbx, 'http', `http://${net.addresses.allowed}/`, 'denied.test'), ['HTTP', '403'])
    assert.equal((await runProbe(sbx, 'tls', net.addresses.allowed, 'denied.test'))[0], 'FAIL')
    assert.deepEqual(await runProbe(sbx, 'tls', net.addresses.allowed, 'allowed.test'), ['OK', `${net.addresses.allowed} allowed.test|allowed.test GET /`])
    // An allowed name in Host sent to another host's address reaches the allowed host, not that one.
    assert.deepEqual(await runProbe(sbx, 'http', `http://${net.addresses.other}/`, 'allowed.test'), ['OK', `${net.addresses.allowed} allowed.test GET /`])
    // A CNAME is followed for the allowed name, but its target is no allowed name.
    assert.deepEqual(await runProbe(sbx, 'http', 'http://alias.test/'), ['OK', `${net.addresses.denied} alias.test GET /`])
    assert.equal((await runProbe(sbx, 'resolve', 'denied.test'))[0], 'FAIL')
    assert.deepEqual(await runProbe(sbx, 'http', `http://${net.addresses.denied}/`, 'denied.test'), ['HTTP', '403'])
    // An allowed name that points into a never-reachable range (the sandboxes' own, in the same
    // never set as link-local, cloud metadata: checked in the ruleset below) resolves to nothing.
    assert.equal((await runProbe(sbx, 'resolve', 'never.test'))[0], 'FAIL')
    // An upgrade to an allowed name: what the sandbox sends behind it goes up only once the server
    // switched protocols; a plain request pipelined behind one that is not switched is never sent.
    const switched = await runProbe(sbx, 'upgrade', net.addresses.other, '/echo', 'allowed.test', 'denied.test')
    assert.equal(switched[0], 'OK')
    assert.match(switched[1], /switched for allowed\.test\|GET \/ HTTP\/1\.1\|Host: denied\.test\|/, 'the echo got the bytes behind the upgrade')
    const plain = await runProbe(sbx, 'upgrade', net.addresses.other, '/', 'allowed.test', 'denied.test')
    assert.match(plain[1], /allowed\.test GET \//)
    assert.doesNotMatch(plain[1], /denied\.test GET/, 'a request behind an upgrade that was not switched reached a server with its Host unchecked')
    // So does one that points at the host's own address (only an answer: nothing is sent there).
    assert.equal((await runProbe(sbx, 'resolve', 'host.test'))[0], 'FAIL')
    // No IPv6 at all, and no raw sockets (so no forged packets either).
    assert.deepEqual(await runProbe(sbx, 'dns', 'allowed.test', gateway, 'udp', '28'), ['RCODE0', ''])
    assert.equal((await sh(sbx, 'cat /proc/net/if_inet6 | wc -l')).stdout.trim(), '0')
    // IPv6 loopback: with no IPv6 in the sandbox, even this connect fails in its own stack (no
    // address, no route) instead of being refused by a listener.
    const v6 = await runProbe(sbx, 'ipv6', '::1')
    assert.equal(v6[0], 'FAIL')
    assert.match(v6[1] ?? '', /:(101|99|97)$/, `expected ENETUNREACH, EADDRNOTAVAIL or EAFNOSUPPORT, got ${v6[1]}`)
    assert.equal((await runProbe(sbx, 'raw'))[0], 'FAIL')
    // ping still works without CAP_NET_RAW, through ICMP echo sockets.
    const icmp = await sh(sbx, ['python3', '-c', 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP); print("ok")'])
    assert.equal(icmp.stdout.trim(), 'ok', icmp.stderr)
  })

  it('drops packets with a forged source address (a sandbox with raw sockets, as a VM guest has)', async () => {
    const sbx = await create()
    const address = await sandboxAddress(sbx)
    const initPid = JSON.parse(execFileSync('runc', ['--root', join(stack.dataDir, 'runc'), 'state', sbx.sandboxId], { encoding: 'utf8' })).pid as number
    const forge = (source: string, payload: string) => [
      'import socket, struct',
      `src, dst, body = socket.inet_aton('${source}'), socket.inet_aton('${net.addresses.other}'), b'${payload}'`,
      'udp = struct.pack(">HHHH", 40000, 9999, 8 + len(body), 0) + body',
      'ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst)',
      's = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)',
      `s.sendto(ip + udp, ('${net.addresses.other}', 0))`,
    ].join('\n')
    // As root on the host in the sandbox's network namespace: what a guest kernel could send.
    for (const [source, payload] of [['198.18.250.250', 'forged'], [address, 'honest']]) {
      await execa('nsenter', [`--net=/proc/${initPid}/ns/net`, 'python3', '-c', forge(source, payload)])
    }
    await until('the honest datagram', async () => (await net.stats()).datagrams.some((d) => d.endsWith(' honest')))
    assert.ok(!(await net.stats()).datagrams.some((d) => d.endsWith(' forged')), 'a forged source went out')
  })

  it('keeps never-reachable ranges in every sandbox\'s rules (checked in the ruleset, never by sending)', async () => {
    await create({ allowOut: ['0.0.0.0/0'] })
    const table = `sandstorm_${createHash('sha256').update(stack.dataDir).digest('hex').slice(0, 6)}`
    const ruleset = (await execa('nft', ['list', 'table', 'inet', table])).stdout
    const never = /set never \{[^}]*elements = \{([^}]*)\}/.exec(ruleset)?.[1] ?? ''
    for (const range of ['127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/4', '240.0.0.0/4', '198.18.0.0/16']) assert.ok(never.includes(range), `${range} is not in the never set: ${never}`)
    const chains = ruleset.split('chain e_').slice(1)
    assert.ok(chains.length > 0)
    // Even a sandbox that allows everything meets the never set first.
    for (const chain of chains) assert.match(chain, /^\w+ \{\s*ip daddr @never reject/)
  })
})
