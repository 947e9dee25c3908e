/**
 * A compromised agent host on the fleet link: it holds a valid identity (here an --insecure
 * server's token) and sends whatever it likes. It must not reach other agents' sandboxes or
 * snapshots, nor stop the fleet's creates, nor wipe the central log, nor hold the server's memory.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import * as grpc from '@grpc/grpc-js'
import { runAgent } from '../../agent/index.js'
import type { AgentSnapshot, RunningAgent } from '../../agent/index.js'
import { silentLogger } from '../../shared/index.js'
import { createFakeAgent } from '../fake-agent.fixture.js'
import { startServer } from '../index.js'
import type { RunningServer } from '../index.js'
import { maxSpares } from './agent-connection.js'
import { maxArgvWords } from './command-log.js'
import { hostileAgent, within } from './hostile-agent.fixture.js'
import { until } from '../../../test/helpers/until.js'

describe('a hostile agent on the fleet link', () => {
  let dir: string
  let server: RunningServer
  let honest: RunningAgent
  const fake = createFakeAgent({ snapshots: true })
  const api = async (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${server.url}${path}`, { ...init, headers: { authorization: `Bearer ${server.apiKey}`, 'content-type': 'application/json', ...init.headers } })
  const liveAgents = async (): Promise<string[]> =>
    ((await (await api('/v1/agents')).json()) as { agents: { id: string; state: string }[] }).agents.filter((a) => a.state === 'live').map((a) => a.id)
  const hostiles: ReturnType<typeof hostileAgent>[] = []
  const hostile = (n: number): ReturnType<typeof hostileAgent> => {
    const h = hostileAgent(server.fleet!.port, server.fleet!.joinToken, `ag-${String(n).padStart(16, 'h')}`)
    hostiles.push(h)
    return h
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-hostile-'))
    server = await startServer({ dataDir: join(dir, 'server'), port: 0, logger: silentLogger(), fleet: { port: 0, insecure: true, lostAfterMs: 60_000 } })
  })
  after(async () => {
    for (const h of hostiles) h.close()
    await honest?.close()
    await server.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('a registration of the wrong shape is refused whole, and the fleet\'s creates go on', async () => {
    const bad = hostile(1)
    bad.register({ templatesJson: '{}' })
    const end = await within(bad.ended, 5000, 'the bad registration\'s link to end')
    assert.equal(end.code, grpc.status.INVALID_ARGUMENT)
    assert.match(end.details, /register\.templates: expected an array, got \{\}/)
    // One that did register, joined before the honest agent, is first in the scheduler's list.
    const first = hostile(2)
    first.register({ labelsJson: JSON.stringify({ zone: 'a' }), templatesJson: JSON.stringify(['debian']) })
    await until('the hostile agent to be live', async () => (await liveAgents()).includes('ag-hhhhhhhhhhhhhhh2'))
    honest = await runAgent({ serverUrl: `127.0.0.1:${server.fleet!.port}`, token: server.fleet!.joinToken, dataDir: join(dir, 'agent'), local: fake, insecure: true, heartbeatMs: 100, labels: { zone: 'b' } })
    await until('two live agents', async () => (await liveAgents()).length === 2)
    const res = await api('/v1/sandboxes', { method: 'POST', body: JSON.stringify({ template: 'debian' }) })
    assert.equal(res.status, 201, await res.clone().text())
  })

  it('cannot claim another agent\'s snapshot: a fork goes to the agent that took it, with its env', async () => {
    const claimer = hostiles[1]!
    claimer.asked.length = 0
    // It says yes to every snapshot id, and would make any fork.
    claimer.answerWith((kind, payload) => {
      if (kind === 'list' || kind === 'templates' || kind === 'snapshots.list') return []
      if (kind === 'snapshots.get') return { id: (payload as { id: string }).id, sandboxId: 'sb-x', template: 'debian', env: {} }
      if (kind === 'create') return { id: (payload as { id: string }).id, template: 'debian', runtime: 'runc', status: 'running' }
      return null
    })
    const res = await api('/v1/sandboxes', { method: 'POST', body: JSON.stringify({ template: 'debian', env: { SECRET: 'kept' }, labels: { 'agent.zone': 'b' } }) })
    const { id } = (await res.json()) as { id: string }
    assert.ok(fake.sandboxes.has(id), 'the sandbox is on the honest agent')
    const snap = (await (await api(`/v1/sandboxes/${id}/snapshots`, { method: 'POST', body: '{}' })).json()) as { id: string }
    const fork = await api(`/v1/snapshots/${snap.id}/fork`, { method: 'POST', body: '{}' })
    assert.equal(fork.status, 201, await fork.clone().text())
    assert.equal(claimer.asked.filter((a) => a.kind === 'create').length, 0, `the hostile agent was asked to make the fork: ${JSON.stringify(claimer.asked)}`)
    assert.ok(!JSON.stringify(claimer.asked).includes('kept'), 'the snapshot\'s env reached the hostile agent')
  })

  it('cannot pass off a snapshot id of another agent as a new one of its own', async () => {
    const claimer = hostiles[1]!
    const [victim] = (await fake.snapshots!.list()) as AgentSnapshot[]
    // A sandbox placed on the hostile agent: its take answers with the honest agent's snapshot id.
    const res = await api('/v1/sandboxes', { method: 'POST', body: JSON.stringify({ template: 'debian', labels: { 'agent.zone': 'a' } }) })
    const placed = res.status === 201 ? ((await res.json()) as { id: string }).id : undefined
    if (!placed) return assert.fail(`could not place a sandbox on the hostile agent: ${res.status}`)
    claimer.answerWith((kind) => (kind === 'snapshots.take' ? { ...victim!, template: 'hostile', env: { SECRET: 'forged' } } : kind === 'list' || kind === 'snapshots.list' ? [] : null))
    const take = await api(`/v1/sandboxes/${placed}/snapshots`, { method: 'POST', body: '{}' })
    assert.equal(take.status, 500)
    const info = (await (await api(`/v1/snapshots/${victim!.id}`)).json()) as { template: string }
    assert.equal(info.template, 'debian', 'the honest agent\'s snapshot record was overwritten')
  })

  it("a command event of the wrong shape is dropped, alone; one about another agent's sandbox, or a sandbox of none, too", async () => {
    const reporter = hostile(3)
    reporter.register({ labelsJson: JSON.stringify({ zone: 'c' }), templatesJson: JSON.stringify(['debian']) })
    await until('the reporter to be live', async () => (await liveAgents()).includes('ag-hhhhhhhhhhhhhhh3'))
    const created = await api('/v1/sandboxes', { method: 'POST', body: JSON.stringify({ template: 'debian', labels: { 'agent.zone': 'c' } }) })
    assert.equal(created.status, 201, await created.clone().text())
    const { id: own } = (await created.json()) as { id: string }
    const [victimId] = [...fake.sandboxes.keys()]
    const unknown = 'sb-reportedxxxxxxx'
    const report = (sandboxId: string, argv: string[], durationMs = 1): void =>
      reporter.send({ event: { kind: 'command', json: JSON.stringify({ sandboxId, argv, exitCode: 0, durationMs, outputBytes: 0 }) } })
    report(victimId!, ['forged'])
    reporter.send({ event: { kind: 'command', json: '{}' } })
    report(unknown, ['forged'])
    // More words than execve takes: dropped. Fewer, but still thousands: logged, cut.
    report(own, new Array<string>(300_000).fill(''))
    report(own, new Array<string>(200_000).fill(''))
    // A clock stepped back gives a negative duration: logged as 0, not refused.
    report(own, ['true'], -5)
    // The bad ones neither ended the link nor took the good ones with them (a batch rolled back).
    const logged = await until('the good events in the log', async () => {
      const body = (await (await api(`/v1/logs?sandbox=${own}`)).json()) as { commands: { argv: string[]; durationMs: number }[] }
      return body.commands.at(-1)?.argv[0] === 'true' && body.commands
    })
    assert.deepEqual(logged.map((c) => [c.argv.length, c.durationMs]), [[maxArgvWords + 1, 1], [1, 0]])
    assert.equal(logged[0]!.argv.at(-1), '…')
    assert.ok((await liveAgents()).includes('ag-hhhhhhhhhhhhhhh3'), 'the link of an agent that sent a bad event was ended')
    const logs = (await (await api(`/v1/logs?sandbox=${victimId}`)).json()) as { commands: { argv: string[] }[] }
    assert.deepEqual(logs.commands.filter((c) => c.argv[0] === 'forged'), [], "a forged entry is in the victim's log")
    const none = (await (await api(`/v1/logs?sandbox=${unknown}`)).json()) as { commands: unknown[] }
    assert.deepEqual(none.commands, [], 'an entry for a sandbox the catalog does not know is in the log')
  })

  it('keeps only a few spare data streams of an agent; the rest are ended', async () => {
    const hoarder = hostile(4)
    hoarder.register()
    await until('the hoarder to be live', async () => (await liveAgents()).includes('ag-hhhhhhhhhhhhhhh4'))
    const streams = Array.from({ length: maxSpares + 24 }, () => hoarder.spare())
    let ended = 0
    for (const s of streams) void s.then(() => ended++)
    await until(`${24} spare streams to be ended`, async () => ended >= 24)
    await new Promise((r) => setTimeout(r, 200))
    assert.equal(ended, 24)
  })
})

describe('an agent whose list fails', () => {
  it("holds up neither the state checks of other agents' sandboxes nor its own sandboxes' records", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sandstorm-failing-list-'))
    const server = await startServer({ dataDir: join(dir, 'server'), port: 0, logger: silentLogger(), stateWatchMs: 100, fleet: { port: 0, insecure: true, lostAfterMs: 60_000 } })
    const fake = createFakeAgent()
    const failing = hostileAgent(server.fleet!.port, server.fleet!.joinToken, 'ag-ffffffffffffffff')
    let honest: RunningAgent | undefined
    const api = async (path: string, init: RequestInit = {}): Promise<Response> =>
      fetch(`${server.url}${path}`, { ...init, headers: { authorization: `Bearer ${server.apiKey}`, 'content-type': 'application/json', ...init.headers } })
    const stateOf = async (id: string): Promise<string> => ((await (await api(`/v1/sandboxes/${id}`)).json()) as { state: string }).state
    try {
      failing.register({ labelsJson: JSON.stringify({ zone: 'a' }), templatesJson: JSON.stringify(['debian']) })
      honest = await runAgent({ serverUrl: `127.0.0.1:${server.fleet!.port}`, token: server.fleet!.joinToken, dataDir: join(dir, 'agent'), local: fake, insecure: true, heartbeatMs: 100, labels: { zone: 'b' } })
      const create = async (zone: string): Promise<string> => {
        const res = await api('/v1/sandboxes', { method: 'POST', body: JSON.stringify({ template: 'debian', labels: { 'agent.zone': zone } }) })
        assert.equal(res.status, 201, await res.clone().text())
        return ((await res.json()) as { id: string }).id
      }
      await until('two live agents', async () => {
        const agents = ((await (await api('/v1/agents')).json()) as { agents: { state: string }[] }).agents
        return agents.filter((a) => a.state === 'live').length === 2
      })
      const onFailing = await create('a')
      const onHonest = await create('b')
      failing.answerWith((kind) => (kind === 'list' ? new Error('the list broke') : kind === 'templates' ? [] : null))
      // The honest agent's sandbox dies on its own: the state check marks it, the failing list notwithstanding.
      fake.sandboxes.get(onHonest)!.sandbox.status = 'stopped'
      await until('the dead sandbox to be marked stopped', async () => (await stateOf(onHonest)) === 'stopped', 10_000)
      assert.ok(failing.asked.some((a) => a.kind === 'list'), 'the failing agent was asked')
      // What the failing agent holds is taken as the catalog knew it: not stopped, not forgotten.
      assert.equal(await stateOf(onFailing), 'running')
    } finally {
      failing.close()
      await honest?.close()
      await server.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})

