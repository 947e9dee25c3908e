/**
 * The fleet end to end: a `sandstorm server` and three `sandstorm agent`s as separate processes,
 * each agent in its own network namespace, reaching the server only over veth links.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { ResultPromise } from 'execa'
import { listAgents, listCommandLogs, Sandbox, type AgentInfo } from '@sandstorm/sdk'
import { networkTag, slotIdsOnHost } from '../src/network/slots.js'
import { startAgentProcess, startServerProcess, type ServerProcess } from './helpers/fleet-processes.js'
import { createTestNetwork, type TestNetwork } from './helpers/netns.js'
import { skipReason } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? (existsSync('/usr/sbin/ip') || existsSync('/sbin/ip') ? false : 'no ip command (iproute2)')


describe('fleet: server and three agents in network namespaces', { skip, timeout: 240_000 }, () => {
  let dir: string
  let net: TestNetwork
  let server: ServerProcess
  const agents: ResultPromise[] = []
  const sandboxes: Sandbox[] = []
  const conn = (): { apiUrl: string; apiKey: string } => ({ apiUrl: server.url, apiKey: server.apiKey })
  const agentDir = (i: number): string => join(dir, `agent-${i}`)
  const startAgent = (i: number, token?: string): ResultPromise =>
    startAgentProcess({ netns: net.namespaces[i]!, server: server.agentAddress, token, dataDir: agentDir(i) })
  const live = async (n: number): Promise<AgentInfo[] | false> => {
    const list = (await listAgents(conn())).filter((a) => a.state === 'live' && a.metrics)
    return list.length === n && list
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-fleet-'))
    net = await createTestNetwork(3)
    server = await startServerProcess({ dataDir: join(dir, 'server'), agentHost: net.hostAddress })
    assert.equal(server.agentAddress.split(':')[0], net.hostAddress)
    for (let i = 0; i < 3; i++) agents.push(startAgent(i, server.token))
    await until('three live agents', () => live(3), 60_000)
  })

  after(async () => {
    if (server) for (const s of sandboxes) await Sandbox.kill(s.sandboxId, conn()).catch(() => undefined)
    for (const a of agents) a.kill('SIGTERM')
    await Promise.allSettled(agents)
    server?.child.kill('SIGTERM')
    await server?.child
    await net?.remove()
    await rm(dir, { recursive: true, force: true })
  })

  it('spreads creates over the three agents and runs commands on each', async () => {
    for (let i = 0; i < 6; i++) sandboxes.push(await Sandbox.create('debian', { ...conn(), timeoutMs: 10 * 60_000 }))
    const spread = await until('heartbeats counting two sandboxes on each agent', async () => {
      const list = (await listAgents(conn())).map((a) => a.metrics?.sandboxes ?? 0)
      return list.length === 3 && list.every((n) => n === 2) && list
    })
    assert.deepEqual(spread, [2, 2, 2])
    for (const s of sandboxes) {
      const result = await s.commands.run(['echo', s.sandboxId])
      assert.equal(result.stdout, `${s.sandboxId}\n`)
    }
    const logs = await listCommandLogs({ ...conn(), sandboxId: sandboxes[0]!.sandboxId })
    assert.deepEqual(logs.at(-1)?.argv, ['echo', sandboxes[0]!.sandboxId])
    assert.equal(logs.at(-1)?.outputBytes, sandboxes[0]!.sandboxId.length + 1)
  })

  it('marks a SIGKILLed agent lost within 20 s with its sandboxes, and fails their calls at once', async () => {
    agents[0]!.kill('SIGKILL')
    await agents[0]
    const startedAt = Date.now()
    const lost = await until('two lost sandboxes', async () => {
      const list = (await Sandbox.list(conn())).filter((s) => s.state === 'lost')
      return list.length === 2 && list
    }, 20_000)
    assert.ok(Date.now() - startedAt <= 20_000)
    assert.equal((await listAgents(conn())).filter((a) => a.state === 'lost').length, 1)
    const onLost = sandboxes.find((s) => s.sandboxId === lost[0]!.id)!
    await assert.rejects(onLost.commands.run(['true']), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'unavailable')
      assert.match(err.message, /lost/)
      return true
    })
  })

  it('adopts the still-running sandboxes of a restarted agent', async () => {
    // The agent kept its certificate: no token the second time.
    agents[0] = startAgent(0)
    await until('three live agents', () => live(3))
    await until('all six running', async () => (await Sandbox.list(conn())).filter((s) => s.state === 'running').length === 6)
    for (const s of sandboxes) assert.equal((await s.commands.run(['echo', 'back'])).stdout, 'back\n')
  })

  it('refuses an agent with a wrong token, and logs it', async () => {
    const wrong = server.token.replace(/\.[^.]+$/, '.thisisnotthesecretofthisserver')
    const rogueDir = join(dir, 'rogue')
    const rogue = await startAgentProcess({ netns: net.namespaces[2]!, server: server.agentAddress, token: wrong, dataDir: rogueDir })
    assert.notEqual(rogue.exitCode, 0)
    assert.match(String(rogue.stderr), /refused/)
    assert.equal((await listAgents(conn())).length, 3)
    // What its local agent made before the refusal (spare network slots) went with it.
    assert.deepEqual(await slotIdsOnHost(networkTag(rogueDir)), [])
  })

  it('keeps every sandbox across a server restart: the agents reconnect', async () => {
    const [, port] = /:(\d+)$/.exec(server.agentAddress)!
    const apiPort = Number(new URL(server.url).port)
    server.child.kill('SIGTERM')
    await server.child
    server = await startServerProcess({ dataDir: join(dir, 'server'), agentHost: net.hostAddress, agentPort: Number(port), port: apiPort })
    await until('three live agents after the restart', () => live(3))
    await until('all six running', async () => (await Sandbox.list(conn())).filter((s) => s.state === 'running').length === 6)
    for (const s of sandboxes) assert.equal((await s.commands.run(['echo', 'again'])).stdout, 'again\n')
  })
})
