/**
 * What one sandbox may take of the host's network, against a test internet (helpers/internet.ts):
 * a count of open connections (so that no sandbox fills the host's connection tracking table),
 * a count of pinned addresses, and no tracked connection that outlives the sandbox (whose NAT
 * mapping would hand a peer's packets to the next sandbox given the address).
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { execa } from 'execa'
import { Sandbox, type SandboxCreateOptions } from '@sandstorm/sdk'
import { createHostNetwork } from '../src/network/index.js'
import { newId, silentLogger } from '../src/shared/index.js'
import { createTestInternet, type TestInternet } from './helpers/internet.js'
import { createProbed, runProbe, sandboxAddress } from './helpers/net-probe.js'
import { sh } from './helpers/sandbox-shell.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false

/** The connections this stack lets one sandbox have open, in all and to the agent itself. */
const perSandbox = 24
const toAgent = 8
/** What all sandboxes of the stack may hold together: room for one full sandbox and a few. */
const allSandboxes = perSandbox + 16

/**
 * Opens `count` TCP connections to addr:80 and holds them until /tmp/<tag>.release exists; writes
 * "<opened> <failures by kind>" to /tmp/<tag>.result once it has tried them all, and touches
 * /tmp/<tag>.closed once it has closed them.
 */
const holdConnections = (addr: string, count: number, tag: string): string => `
import json, os, socket, time
held, fails = [], {}
for _ in range(${count}):
    try:
        held.append(socket.create_connection(('${addr}', 80), timeout=3))
    except OSError as e:
        fails[type(e).__name__] = fails.get(type(e).__name__, 0) + 1
with open('/tmp/${tag}.tmp', 'w') as f:
    f.write('%d %s' % (len(held), json.dumps(fails)))
os.rename('/tmp/${tag}.tmp', '/tmp/${tag}.result')
while not os.path.exists('/tmp/${tag}.release'):
    time.sleep(0.05)
for s in held:
    s.close()
open('/tmp/${tag}.closed', 'w').close()
`

describe('network limits', { skip, timeout: 300_000 }, () => {
  let net: TestInternet
  let stack: Stack
  const made: Sandbox[] = []

  const create = async (network?: SandboxCreateOptions['network']): Promise<Sandbox> => {
    const sbx = await createProbed(stack.conn, net.caPem, network)
    made.push(sbx)
    return sbx
  }
  /** Starts holdConnections in the sandbox and waits for its result. */
  const hold = async (sbx: Sandbox, count: number, tag: string): Promise<{ opened: number; fails: Record<string, number> }> => {
    await sbx.commands.run(['python3', '-c', holdConnections(net.addresses.allowed, count, tag)], { background: true })
    const line = await until(`${tag}'s connections to be tried`, async () => {
      const r = await sh(sbx, `cat /tmp/${tag}.result 2>/dev/null`)
      assert.notEqual(r.stdout, '', 'no result yet')
      return r.stdout
    }, 60_000)
    const space = line.indexOf(' ')
    return { opened: Number(line.slice(0, space)), fails: JSON.parse(line.slice(space + 1)) as Record<string, number> }
  }
  /** The host's tracked connections from or to `address`. */
  const tracked = async (address: string): Promise<string[]> => {
    const lines = await Promise.all(['-s', '-d'].map(async (flag) => (await execa('conntrack', ['-L', flag, address], { reject: false })).stdout))
    return lines.join('\n').split('\n').filter((l) => l.includes(address))
  }

  before(async () => {
    net = await createTestInternet()
    stack = await startStack({ network: { publicCidrs: [net.cidr], dnsUpstreams: [net.addresses.dns], connectionsPerSandbox: perSandbox, agentConnectionsPerSandbox: toAgent, connectionsOfAllSandboxes: allSandboxes, pinsPerSandbox: 1 } })
  })
  after(async () => {
    for (const s of made) await s.kill().catch(() => undefined)
    await stack?.close()
    await net?.remove()
  })

  it('refuses a sandbox\'s new connections past its count, leaves other sandboxes theirs, and gives them back as they close', async () => {
    const [greedy, other] = await Promise.all([create(), create()])
    const first = await hold(greedy, perSandbox + 16, 'greedy')
    // Nothing else in the sandbox holds a connection: all of its count went to these.
    assert.equal(first.opened, perSandbox, `opened ${first.opened} of ${perSandbox + 16}`)
    assert.deepEqual(Object.keys(first.fails), ['OSError'], 'a refused connection should fail at once (no route), not time out')
    // Another sandbox is untouched by the first one's full count.
    assert.equal((await hold(other, 10, 'other')).opened, 10)
    await sh(greedy, 'touch /tmp/greedy.release')
    await until('the greedy sandbox\'s connections to be closed', async () => {
      assert.equal((await sh(greedy, 'test -e /tmp/greedy.closed')).exitCode, 0)
      return true
    }, 20_000)
    // Closed connections no longer count (conntrack keeps them a while in TIME_WAIT).
    assert.equal((await hold(greedy, 10, 'again')).opened, 10)
    await sh(greedy, 'touch /tmp/again.release')
    await sh(other, 'touch /tmp/other.release')
  })

  it('holds all sandboxes together to a count, so the host keeps the rest of its one conntrack table', async () => {
    const [greedy, second, third] = await Promise.all([create(), create(), create()])
    assert.equal((await hold(greedy, perSandbox, 'all-greedy')).opened, perSandbox)
    // What is left of the count for all goes to whoever asks first; no sandbox gets past it.
    const both = await Promise.all([hold(second, perSandbox, 'all-second'), hold(third, perSandbox, 'all-third')])
    const opened = both[0].opened + both[1].opened
    assert.ok(opened <= allSandboxes - perSandbox, `the other two opened ${opened}, past the ${allSandboxes - perSandbox} left of the count for all`)
    assert.ok(opened > 0, 'the count for all refused what it had left')
    for (const [sbx, tag] of [[greedy, 'all-greedy'], [second, 'all-second'], [third, 'all-third']] as const) await sh(sbx, `touch /tmp/${tag}.release`)
  })

  it('holds a sandbox to a smaller count of connections to the agent (its name checks), and leaves the rest of its count to it', async () => {
    const sbx = await create({ allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'] })
    // Under a domain policy TCP 80 goes to the agent's HTTP check, which takes the connection.
    const checked = await hold(sbx, toAgent + 8, 'checked')
    assert.equal(checked.opened, toAgent, `opened ${checked.opened} of ${toAgent + 8}`)
    assert.deepEqual(Object.keys(checked.fails), ['OSError'])
    // DNS (UDP) still answers, and other ports are not held to that count.
    assert.deepEqual(await runProbe(sbx, 'resolve', 'allowed.test'), ['OK', net.addresses.allowed])
    assert.equal((await runProbe(sbx, 'tcp', net.addresses.allowed, '8080'))[0], 'OK')
    await sh(sbx, 'touch /tmp/checked.release')
  })

  it('forgets a destroyed sandbox\'s tracked connections, so that none can reach the next sandbox at its address', async () => {
    const sbx = await create()
    const address = await sandboxAddress(sbx)
    assert.equal((await hold(sbx, 1, 'one')).opened, 1)
    assert.ok((await tracked(address)).some((l) => /ESTABLISHED/.test(l)), 'the held connection is not tracked')
    await sbx.kill()
    await until('the sandbox\'s tracked connections to be deleted', async () => {
      const left = await tracked(address)
      assert.deepEqual(left, [], left.join('\n'))
      return true
    }, 10_000)
  })

  it('at start, forgets the tracked connections of the slots that no sandbox holds any more', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'sandstorm-orphan-slot-'))
    const options = { dataDir, logger: silentLogger(), spareSlots: 0, publicCidrs: [net.cidr], dnsUpstreams: [net.addresses.dns] }
    const first = await createHostNetwork(options)
    await first.adopt(new Map())
    const { slot } = await first.attach(newId('sb'), { allowOut: [], denyOut: [] })
    // A program in the slot holds a connection out, then dies with its sandbox while the agent is down.
    const holder = execa('ip', ['netns', 'exec', slot.netns, 'python3', '-c', `import socket, time; s = socket.create_connection(('${net.addresses.allowed}', 80)); print('up', flush=True); time.sleep(120)`], { reject: false })
    try {
      await until('the held connection to be tracked', async () => (await tracked(slot.address)).some((l) => /ESTABLISHED/.test(l)))
    } finally {
      holder.kill('SIGKILL')
      await holder
    }
    await first.close()
    // Closed by the kill, the connection is still tracked (TIME_WAIT, 2 minutes; a crash can leave ESTABLISHED for days).
    assert.notDeepEqual(await tracked(slot.address), [])
    const second = await createHostNetwork(options)
    try {
      await second.adopt(new Map())
      await until('the orphan slot\'s tracked connections to be deleted', async () => {
        const left = await tracked(slot.address)
        assert.deepEqual(left, [], left.join('\n'))
        return true
      }, 10_000)
    } finally {
      await second.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  })

  it('answers SERVFAIL for names whose addresses would pin more than a sandbox may hold', async () => {
    const sbx = await create({ allowOut: ['allowed.test', 'other.test'], denyOut: ['0.0.0.0/0'] })
    assert.deepEqual(await runProbe(sbx, 'dns', 'allowed.test', '198.18.0.1'), ['RCODE0', net.addresses.allowed])
    // Asked again: the address is pinned already, and the answer costs no new pin.
    assert.deepEqual(await runProbe(sbx, 'dns', 'allowed.test', '198.18.0.1'), ['RCODE0', net.addresses.allowed])
    // A second address would be one pin more than this stack allows.
    assert.deepEqual(await runProbe(sbx, 'dns', 'other.test', '198.18.0.1'), ['RCODE2', ''])
    // Port 8080: not steered to the name checks, so only a pin lets it through.
    assert.equal((await runProbe(sbx, 'tcp', net.addresses.other, '8080'))[0], 'FAIL')
    // A policy update empties the pins: the other name resolves, and its server is reached.
    await sbx.updateNetwork({ allowOut: ['other.test'], denyOut: ['0.0.0.0/0'] })
    assert.deepEqual(await runProbe(sbx, 'dns', 'other.test', '198.18.0.1'), ['RCODE0', net.addresses.other])
    assert.equal((await runProbe(sbx, 'tcp', net.addresses.other, '8080'))[0], 'OK')
  })
})
