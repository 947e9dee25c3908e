/**
 * QEMU microVMs on the network: a booted VM reaches the test internet under its policy, and a
 * clone of its saved machine (a fork of its memory snapshot) comes up with its own MAC and address,
 * its routes and resolver working at once.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Sandbox } from '@sandstorm/sdk'
import { createTestInternet, type TestInternet } from './helpers/internet.js'
import { installProbe, runProbe } from './helpers/net-probe.js'
import { sh } from './helpers/sandbox-shell.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { existsSync } from 'node:fs'

const skip = skipReason() ?? (existsSync('/usr/bin/qemu-system-x86_64') ? false : 'qemu-system-x86_64 is not installed')

describe('qemu sandboxes on the network', { skip, timeout: 600_000 }, () => {
  let net: TestInternet
  let stack: Stack
  let conn: { apiUrl: string; apiKey: string; requestTimeoutMs: number }
  const made: Sandbox[] = []

  const linkOf = async (sbx: Sandbox): Promise<{ mac: string; address: string }> => {
    const out = (await sh(sbx, '/.sandstorm/busybox ip -o link show eth0; /.sandstorm/busybox ip -o -4 addr show eth0')).stdout
    return { mac: /link\/ether ([0-9a-f:]{17})/.exec(out)?.[1] ?? '', address: /inet ([0-9.]+)/.exec(out)?.[1] ?? '' }
  }

  before(async () => {
    net = await createTestInternet()
    stack = await startStack({ network: { publicCidrs: [net.cidr], dnsUpstreams: [net.addresses.dns] } })
    // A cold boot under TCG on a loaded host can take longer than the SDK's default deadline.
    conn = { ...stack.conn, requestTimeoutMs: 300_000 }
  })
  after(async () => {
    for (const s of made) await s.kill(conn).catch(() => undefined)
    await stack?.close()
    await net?.remove()
  })

  let vm: Sandbox
  it('a booted VM reaches the internet under its policy, and not the host', async () => {
    vm = await Sandbox.create('debian', { ...conn, runtime: 'qemu', memoryMiB: 512, network: { allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'] } })
    made.push(vm)
    await installProbe(vm, net.caPem)
    assert.deepEqual(await runProbe(vm, 'http', 'http://allowed.test/'), ['OK', `${net.addresses.allowed} allowed.test GET /`])
    assert.equal((await runProbe(vm, 'resolve', 'denied.test'))[0], 'FAIL')
    assert.equal((await runProbe(vm, 'tcp', net.addresses.other, '8080'))[0], 'FAIL')
    assert.equal((await runProbe(vm, 'tcp', '198.18.0.1', '22'))[0], 'FAIL', 'the gateway is the host')
    await vm.updateNetwork({}, conn)
    assert.equal((await runProbe(vm, 'tcp', net.addresses.other, '8080'))[0], 'OK')
  })

  it('a clone of its memory comes up with its own MAC and address, and reaches the internet at once', async () => {
    const snapshot = await vm.snapshot(conn)
    const [clone] = await Sandbox.fork(snapshot.id, { ...conn, network: { allowOut: [], denyOut: [] } })
    made.push(clone!)
    const [a, b] = [await linkOf(vm), await linkOf(clone!)]
    assert.ok(a.address && b.address, `addresses: ${a.address} ${b.address}`)
    assert.notEqual(b.address, a.address, 'the clone kept its machine\'s address')
    assert.notEqual(b.mac, a.mac, 'the clone kept its machine\'s MAC')
    assert.equal((await runProbe(clone!, 'http', 'http://other.test/'))[0], 'OK')
    // Both run on: the machine's and the clone's traffic each come back to its own.
    assert.equal((await runProbe(vm, 'http', 'http://allowed.test/'))[0], 'OK')
  })
})
