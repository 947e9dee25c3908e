/**
 * A sandbox network's life on the host: a restarted agent adopts the networks of the sandboxes
 * that run on (their policies hold), pooled sandboxes get their policy at hand-over, and hundreds
 * of create/destroy cycles leave no namespace, interface, route or rule behind.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { execa } from 'execa'
import { createHostNetwork } from '../src/network/index.js'
import { destroySlot, networkTag } from '../src/network/slots.js'
import { newId, silentLogger } from '../src/shared/index.js'
import { createResidentShell } from '../src/shared/resident-shell.js'
import { deletePool, Sandbox, setPool, waitForPool } from '@sandstorm/sdk'
import { createTestInternet, type TestInternet } from './helpers/internet.js'
import { installProbe, runProbe } from './helpers/net-probe.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false

/** What an agent (by its data dir) holds on the host: its namespaces, and the sandboxes in its nftables table. */
async function hostState(dataDir: string): Promise<{ netns: string[]; tableSandboxes: number; orphanVeths: string[] }> {
  const tag = networkTag(dataDir)
  // Links first: a slot's namespace is made before its veth, so a veth seen here has a namespace by the read below.
  const links = (await execa('ip', ['-o', 'link', 'show'])).stdout.split('\n').map((l) => /^\d+: (sbv[a-z0-9]{10})[@:]/.exec(l)?.[1]).filter((n): n is string => n !== undefined)
  const all = await readdir('/run/netns').catch(() => [] as string[])
  const netns = all.filter((n) => n.startsWith(`sbn-${tag}-`))
  const table = await execa('nft', ['list', 'table', 'inet', `sandstorm_${tag}`], { reject: false })
  const tableSandboxes = (table.stdout.match(/chain e_[a-z0-9]{10}/g) ?? []).length
  // Any agent's veth without its namespace: one being removed (its namespace deleted, the veth
  // going with it and behind the destroy) or a leak, which is told by waiting (settledHostState).
  const slots = new Set(all.filter((n) => n.startsWith('sbn-')).map((n) => n.split('-')[2]))
  const orphanVeths: string[] = []
  for (const link of links.filter((l) => !slots.has(l.slice(3)))) {
    if ((await execa('ip', ['link', 'show', link], { reject: false })).exitCode === 0) orphanVeths.push(link)
  }
  return { netns, tableSandboxes, orphanVeths }
}

/** An agent create of a small sandbox with a network and no policy. */
const vethCreate = (id: string, more: { snapshotId?: string } = {}) => ({
  id,
  template: 'debian',
  ...more,
  memoryMiB: 128,
  cpus: 1,
  pidsMax: 64,
  diskMiB: 256,
  env: {},
  network: { mode: 'veth' as const, egress: { allowOut: [], denyOut: [] } },
})

/** The containers runc holds for the agent whose data dir is `dataDir`, and whether each runs. */
async function containersOf(dataDir: string): Promise<{ id: string; status: string }[]> {
  const listed = (await execa('runc', ['--root', join(dataDir, 'runc'), 'list', '--format', 'json'])).stdout
  return JSON.parse(listed || '[]') as { id: string; status: string }[]
}

/** hostState once no veth is left without its namespace: a leak fails the wait, naming the veths. */
async function settledHostState(dataDir: string): Promise<Awaited<ReturnType<typeof hostState>>> {
  return until('no veth left without its namespace', async () => {
    const state = await hostState(dataDir)
    assert.deepEqual(state.orphanVeths, [], 'veths are left without their namespace')
    return state
  }, 10_000)
}

describe('network lifecycle', { skip, timeout: 600_000 }, () => {
  let net: TestInternet
  let stack: Stack
  before(async () => {
    net = await createTestInternet()
    stack = await startStack({ network: { publicCidrs: [net.cidr], dnsUpstreams: [net.addresses.dns] } })
  })
  after(async () => {
    await stack?.close()
    await net?.remove()
  })

  it('a restarted agent adopts the networks of running sandboxes, policies and all', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn, timeoutMs: 600_000, network: { allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'] } })
    await installProbe(sbx, net.caPem)
    assert.equal((await runProbe(sbx, 'http', 'http://allowed.test/'))[0], 'OK')
    await stack.stop()
    stack = await stack.restart()
    const again = await Sandbox.connect(sbx.sandboxId, stack.conn)
    assert.deepEqual(await runProbe(again, 'http', 'http://allowed.test/'), ['OK', `${net.addresses.allowed} allowed.test GET /`])
    assert.equal((await runProbe(again, 'resolve', 'denied.test'))[0], 'FAIL')
    // Not port 80: under a domain policy that goes to the agent's Host check, which accepts and then refuses.
    assert.equal((await runProbe(again, 'tcp', net.addresses.other, '8080'))[0], 'FAIL')
    await again.updateNetwork({})
    assert.equal((await runProbe(again, 'tcp', net.addresses.other, '8080'))[0], 'OK')
    await again.kill()
  })

  it('a pooled create stays a hand-over and gets its own policy at once', async () => {
    await setPool('debian', { ...stack.conn, min: 2, max: 2 })
    await waitForPool('debian', { ...stack.conn, ready: 2 })
    const closed = await Sandbox.create('debian', { ...stack.conn, network: { allowInternetAccess: false } })
    const open = await Sandbox.create('debian', { ...stack.conn })
    try {
      assert.equal(closed.start.source, 'pool')
      assert.equal(open.start.source, 'pool')
      await installProbe(closed, net.caPem)
      await installProbe(open, net.caPem)
      assert.equal((await runProbe(closed, 'tcp', net.addresses.allowed, '80'))[0], 'FAIL')
      assert.equal((await runProbe(open, 'tcp', net.addresses.allowed, '80'))[0], 'OK')
      const none = await Sandbox.create('debian', { ...stack.conn, network: 'none' })
      assert.equal(none.start.source, 'cold', 'pooled sandboxes have a network: one without takes none of them')
      await none.kill()
    } finally {
      await Promise.all([closed.kill(), open.kill()])
      await deletePool('debian', stack.conn)
    }
  })

  it('a create whose writable layer fails leaves no network, though both were made at once', async () => {
    // Once the spare slots of the stack's start are all made.
    let start = await hostState(stack.dataDir)
    await until('the spare slots made', async () => {
      await new Promise((r) => setTimeout(r, 300))
      const now = await hostState(stack.dataDir)
      const same = now.netns.length === start.netns.length
      start = now
      return same
    })
    const id = newId('sb')
    // The layer of an unknown snapshot fails, while the network is attached beside it.
    await assert.rejects(
      stack.agent.create(vethCreate(id, { snapshotId: 'snap-0000000000000000' })),
      /snapshot "snap-0000000000000000" not found/,
    )
    await until('the spare slots made again', async () => (await hostState(stack.dataDir)).netns.length === start.netns.length)
    const end = await settledHostState(stack.dataDir)
    assert.equal(end.tableSandboxes, start.tableSandboxes, 'the failed create left its rules in the table')
    assert.equal(existsSync(join(stack.dataDir, 'storage', 'writable', id)), false, 'the failed create left a writable dir')
    assert.deepEqual((await stack.agent.list()).filter((s) => s.id === id), [])
  })

  it('a container starts while its rules are written, and one whose rules fail is removed before create returns', async () => {
    const live = await Sandbox.create('debian', { ...stack.conn, timeoutMs: 600_000 })
    try {
      const start = await settledHostState(stack.dataDir)
      // The agent's nftables helper, held still: the next sandbox's rules wait while its container starts.
      const children = (await execa('ps', ['-o', 'pid=,comm=', '--ppid', String(process.pid)])).stdout.split('\n')
      const helper = children.map((l) => l.trim().split(/\s+/)).find(([, comm]) => comm === 'nft-apply')?.[0]
      assert.ok(helper, `the agent's nftables helper runs: ${children.join('; ')}`)
      process.kill(Number(helper), 'SIGSTOP')
      const id = newId('sb')
      let created: Promise<unknown>
      try {
        created = stack.agent.create(vethCreate(id))
        created.catch(() => undefined)
        await until('the container started, its rules not written', async () => (await containersOf(stack.dataDir)).some((c) => c.id === id && c.status === 'running'))
      } finally {
        // Its transaction dies with it: the rules fail after the container started.
        process.kill(Number(helper), 'SIGKILL')
      }
      await assert.rejects(created, /the nftables helper exited/)
      assert.deepEqual((await stack.agent.list()).filter((s) => s.id === id), [], 'the sandbox whose rules failed is listed')
      assert.deepEqual((await containersOf(stack.dataDir)).filter((c) => c.id === id), [], 'the container whose rules failed is still there')
      assert.equal(existsSync(join(stack.dataDir, 'storage', 'writable', id)), false, 'the failed create left a writable dir')
      const end = await settledHostState(stack.dataDir)
      assert.equal(end.tableSandboxes, start.tableSandboxes, 'the failed create left rules in the table')
      assert.equal((await live.commands.run('true')).exitCode, 0)
    } finally {
      await live.kill()
    }
  })

  it('a create whose rules are refused (the table deleted under the agent) has the table written again whole', async () => {
    const tag = networkTag(stack.dataDir)
    const live = await Sandbox.create('debian', { ...stack.conn, timeoutMs: 600_000 })
    try {
      const start = await settledHostState(stack.dataDir)
      assert.ok(start.tableSandboxes > 0)
      await execa('nft', ['delete', 'table', 'inet', `sandstorm_${tag}`])
      const id = newId('sb')
      await assert.rejects(
        stack.agent.create(vethCreate(id)),
        /nftables refused a change/,
      )
      assert.deepEqual((await stack.agent.list()).filter((s) => s.id === id), [])
      // The sandbox that ran on is filtered again, not left without rules.
      const end = await settledHostState(stack.dataDir)
      assert.equal(end.tableSandboxes, start.tableSandboxes, 'the table was not written again')
      assert.equal((await live.commands.run('true')).exitCode, 0)
    } finally {
      await live.kill()
    }
  })

  it('a second create of a live id is refused before it touches the first one', async () => {
    const id = newId('sb')
    const req = vethCreate(id)
    await stack.agent.create(req)
    try {
      const before = await hostState(stack.dataDir)
      const { pid } = await stack.agent.exec(id, { argv: ['sh', '-c', 'echo kept > /root/mark'], env: {} })
      assert.equal((await stack.agent.wait(id, pid)).exitCode, 0)
      await assert.rejects(stack.agent.create(req), (err: unknown) => {
        assert.equal((err as { code?: string }).code, 'already_exists')
        assert.match((err as Error).message, new RegExp(`sandbox "${id}" already exists`))
        return true
      })
      // Its disk, its files and its rules are as they were.
      const check = await stack.agent.exec(id, { argv: ['cat', '/root/mark'], env: {} })
      const result = await stack.agent.wait(id, check.pid)
      assert.equal(result.exitCode, 0)
      assert.equal(existsSync(join(stack.dataDir, 'storage', 'writable', `${id}.disk`)), true, 'the first sandbox lost its disk image')
      assert.equal((await hostState(stack.dataDir)).tableSandboxes, before.tableSandboxes)
    } finally {
      await stack.agent.destroy(id)
    }
  })

  it('a slot whose namespace something still holds: its veth is down at once, and deleted behind the detach', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'sandstorm-held-slot-'))
    const network = await createHostNetwork({ dataDir, logger: silentLogger(), spareSlots: 0 })
    const shell = createResidentShell('test')
    const id = newId('sb')
    const { slot } = await network.attach(id, { allowOut: [], denyOut: [] })
    // A process in the namespace holds it alive past its deletion, as one a crash left would.
    const holder = execa('ip', ['netns', 'exec', slot.netns, 'sleep', '120'], { reject: false })
    const linkOf = async (): Promise<string | null> => {
      const r = await execa('ip', ['-o', 'link', 'show', slot.hostIf], { reject: false })
      return r.exitCode === 0 ? r.stdout : null
    }
    try {
      await until('the holder in the namespace', async () => (await execa('ip', ['netns', 'pids', slot.netns], { reject: false })).stdout.trim() !== '')
      assert.match((await linkOf()) ?? '', /<[^>]*\bUP\b[^>]*>/, 'the veth is up while the sandbox has it')
      // The slot's removal itself (what a detach runs first): the namespace goes, the held veth stays, down.
      await destroySlot(shell, slot)
      assert.equal(existsSync(join('/run/netns', slot.netns)), false)
      const held = await linkOf()
      assert.ok(held, 'a held namespace keeps its veth until something deletes it')
      assert.doesNotMatch(held, /<[^>]*\bUP\b[^>]*>/, 'a removed slot\'s veth is down')
      // The detach deletes it too, behind its answer, though the namespace is still held.
      await network.detach(id)
      await until('the held slot\'s veth deleted', async () => (await linkOf()) === null)
      assert.equal(holder.exitCode, null, 'the holder still runs')
    } finally {
      holder.kill('SIGKILL')
      await holder
      shell.close()
      // A detach again (a no-op after one): with the sandbox known, close would keep its rules.
      await network.detach(id)
      await network.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  })

  it("takes ARP from a sandbox's link only with its own sender address: made-up senders leave no neighbour entry on the host", async () => {
    // A VM's guest has a network card of its own, so it can send any ARP; root in the slot's
    // namespace (as this test is) can too. Each made-up sender used to take an entry of the host's
    // one neighbour table.
    const dataDir = await mkdtemp(join(tmpdir(), 'sandstorm-arp-'))
    const network = await createHostNetwork({ dataDir, logger: silentLogger(), spareSlots: 0 })
    const id = newId('sb')
    const { slot } = await network.attach(id, { allowOut: [], denyOut: [] })
    const senders = [...Array.from({ length: 30 }, (_, i) => `198.18.250.${i + 2}`), slot.address]
    const announce = [
      'import socket, struct, sys',
      's = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)',
      "s.bind(('eth0', 0))",
      "mac = bytes.fromhex(open('/sys/class/net/eth0/address').read().strip().replace(':', ''))",
      'for sender in sys.argv[2:]:',
      "    arp = struct.pack('>HHBBH6s4s6s4s', 1, 0x0800, 6, 4, 1, mac, socket.inet_aton(sender), bytes(6), socket.inet_aton(sys.argv[1]))",
      "    s.send(b'\\xff' * 6 + mac + b'\\x08\\x06' + arp)",
    ].join('\n')
    const neighbours = async (): Promise<string[]> => (await execa('ip', ['-4', 'neigh', 'show', 'dev', slot.hostIf])).stdout.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean)
    try {
      // Sent to the sandbox's gateway, the sandbox's own address last: its entry shows the rest were heard.
      await execa('ip', ['netns', 'exec', slot.netns, 'python3', '-c', announce, network.gateway, ...senders])
      await until("the host to learn the sandbox's own address", async () => (await neighbours()).includes(slot.address))
      assert.deepEqual((await neighbours()).filter((a) => a !== slot.address), [])
    } finally {
      await network.detach(id)
      await network.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  })

  it('leaves no namespace, interface, route or rule after 500 create/destroy cycles', async () => {
    const start = await hostState(stack.dataDir)
    const cycles = 500
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < cycles) {
        next++
        const id = newId('sb')
        // No disk quota (0): this counts network leftovers, and an image per cycle would double its time.
        await stack.agent.create({ id, template: 'debian', memoryMiB: 128, cpus: 1, pidsMax: 64, diskMiB: 0, env: {}, network: { mode: 'veth', egress: { allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'] } } })
        await stack.agent.destroy(id)
      }
    }
    await Promise.all([worker(), worker(), worker(), worker()])
    // Spare slots may still be made in the background: wait until they all are.
    await until('the spare slots made again', async () => (await hostState(stack.dataDir)).netns.length === start.netns.length)
    const end = await settledHostState(stack.dataDir)
    assert.equal(end.tableSandboxes, start.tableSandboxes, 'rules of destroyed sandboxes are left in the table')
    // What stays is the agent's spare slots (made ahead for the next creates), as many as before.
    assert.equal(end.netns.length, start.netns.length, `namespaces before ${start.netns.length}, after ${end.netns.length}`)
    // A route goes with its veth, after the namespace.
    const goneRoutes = async (): Promise<string[]> => {
      const routes = (await execa('ip', ['route', 'show', '198.18.0.0/16'])).stdout.split('\n').filter((l) => /dev sbv/.test(l))
      const slotIds = new Set((await readdir('/run/netns')).map((n) => n.split('-')[2]))
      return routes.filter((r) => !slotIds.has(/dev sbv([a-z0-9]{10})/.exec(r)?.[1] ?? ''))
    }
    await until('no route of a sandbox that is gone', async () => {
      assert.deepEqual(await goneRoutes(), [], 'routes of sandboxes that are gone')
      return true
    })
  })
})
