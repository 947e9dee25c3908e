/** The fleet over a real gRPC link on 127.0.0.1, with fake agents behind runAgent: no root, no runc. */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { runAgent } from '../../agent/index.js'
import type { RunningAgent } from '../../agent/index.js'
import { silentLogger } from '../../shared/index.js'
import { createFakeAgent } from '../fake-agent.fixture.js'
import type { FakeAgent } from '../fake-agent.fixture.js'
import { startServer } from '../index.js'
import type { RunningServer } from '../index.js'
import { until } from '../../../test/helpers/until.js'

for (const insecure of [false, true]) {
  describe(`fleet over gRPC (${insecure ? 'insecure' : 'mutual TLS'})`, () => {
    let dir: string
    let server: RunningServer
    const fakes: FakeAgent[] = [createFakeAgent(), createFakeAgent()]
    const agents: RunningAgent[] = []
    const api = async (path: string, init: RequestInit = {}): Promise<Response> =>
      fetch(`${server.url}${path}`, { ...init, headers: { authorization: `Bearer ${server.apiKey}`, 'content-type': 'application/json', ...init.headers } })
    const start = (i: number, token = server.fleet!.joinToken): Promise<RunningAgent> =>
      runAgent({ serverUrl: `127.0.0.1:${server.fleet!.port}`, token, dataDir: join(dir, `agent-${i}`), local: fakes[i], insecure, heartbeatMs: 100 })
    const listAgents = async (): Promise<{ id: string; state: string; metrics: unknown }[]> => ((await (await api('/v1/agents')).json()) as { agents: never[] }).agents

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'sandstorm-fleet-'))
      server = await startServer({ dataDir: join(dir, 'server'), port: 0, logger: silentLogger(), fleet: { port: 0, insecure, lostAfterMs: 1000 } })
      agents.push(await start(0), await start(1))
      await until('two live agents', async () => (await listAgents()).filter((a) => a.state === 'live' && a.metrics).length === 2)
    })
    after(async () => {
      for (const a of agents) await a.close()
      await server.close()
      await rm(dir, { recursive: true, force: true })
    })

    it('spreads creates, runs commands and moves files over the link, and logs every command', async () => {
      const ids: string[] = []
      for (let i = 0; i < 4; i++) {
        const res = await api('/v1/sandboxes', { method: 'POST', body: JSON.stringify({ template: 'debian' }) })
        assert.equal(res.status, 201)
        ids.push(((await res.json()) as { id: string }).id)
      }
      assert.deepEqual(fakes.map((f) => f.sandboxes.size), [2, 2])

      const id = ids[0]!
      const fake = fakes.find((f) => f.sandboxes.has(id))!
      fake.events.once('exec', ({ id: sid, pid }: { id: string; pid: number }) => {
        fake.print(sid, pid, 'stdout', 'hello over grpc')
        fake.finish(sid, pid, 3)
      })
      const exec = await api(`/v1/sandboxes/${id}/exec`, { method: 'POST', body: JSON.stringify({ argv: ['wait', 'greet'] }) })
      const text = await exec.text()
      const events = text.trim().split('\n').map((l) => JSON.parse(l))
      assert.equal(exec.status, 200, text)
      assert.equal(Buffer.from(events.find((e) => e.type === 'stdout').data, 'base64').toString(), 'hello over grpc')
      assert.equal(events.at(-1).type, 'end', text)
      assert.equal(events.at(-1).result.exitCode, 3, text)

      const big = Buffer.alloc(3 * 1024 * 1024, 7)
      assert.equal((await api(`/v1/sandboxes/${id}/files?path=/tmp/big`, { method: 'PUT', body: big, headers: { 'content-type': 'application/octet-stream' } })).status, 204)
      const back = Buffer.from(await (await api(`/v1/sandboxes/${id}/files?path=/tmp/big`)).arrayBuffer())
      assert.ok(back.equals(big))

      const logs = await until('the command in the central log', async () => {
        const body = (await (await api(`/v1/logs?sandbox=${id}`)).json()) as { commands: { argv: string[]; exitCode: number; outputBytes: number }[] }
        return body.commands.length > 0 && body.commands
      })
      assert.deepEqual(logs[0]!.argv, ['wait', 'greet'])
      assert.equal(logs[0]!.exitCode, 3)
      assert.equal(logs[0]!.outputBytes, 'hello over grpc'.length)
    })

    it('runs more commands at once than the agent keeps spare streams for (the rest ask on Control), and a background one outlives its start', async () => {
      const res = await api('/v1/sandboxes', { method: 'POST', body: JSON.stringify({ template: 'debian' }) })
      const { id } = (await res.json()) as { id: string }
      const outputs = await Promise.all(
        Array.from({ length: 24 }, async (_, i) => {
          const r = await api(`/v1/sandboxes/${id}/exec`, { method: 'POST', body: JSON.stringify({ argv: ['echo', `run-${i}`] }) })
          const events = (await r.text()).trim().split('\n').map((l) => JSON.parse(l))
          assert.deepEqual(events.map((e) => e.type), ['start', 'stdout', 'end'])
          return Buffer.from(events[1].data, 'base64').toString()
        }),
      )
      assert.deepEqual(outputs, Array.from({ length: 24 }, (_, i) => `run-${i}\n`))

      const background = await api(`/v1/sandboxes/${id}/exec`, { method: 'POST', body: JSON.stringify({ argv: ['wait'], background: true }) })
      const { pid } = (await background.json()) as { pid: number }
      const fake = fakes.find((f) => f.sandboxes.has(id))!
      fake.print(id, pid, 'stdout', 'later')
      fake.finish(id, pid, 0)
      const events = (await (await api(`/v1/sandboxes/${id}/processes/${pid}/events`)).text()).trim().split('\n').map((l) => JSON.parse(l))
      assert.deepEqual(events.map((e) => e.type), ['start', 'stdout', 'end'])
      assert.equal(events[2].result.exitCode, 0)
    })

    it('marks a silent agent lost with its sandboxes, fails their calls at once, and adopts them back', async () => {
      const res = await api('/v1/sandboxes', { method: 'POST', body: JSON.stringify({ template: 'debian' }) })
      const { id } = (await res.json()) as { id: string }
      const index = fakes.findIndex((f) => f.sandboxes.has(id))
      await agents[index]!.close()
      await until('the sandbox lost', async () => ((await (await api(`/v1/sandboxes/${id}`)).json()) as { state: string }).state === 'lost')
      const call = await api(`/v1/sandboxes/${id}/fs/list?path=/tmp`)
      assert.equal(call.status, 503)
      assert.match(((await call.json()) as { message: string }).message, /lost/)

      agents[index] = await start(index)
      await until('the sandbox back', async () => ((await (await api(`/v1/sandboxes/${id}`)).json()) as { state: string }).state === 'running')
      assert.equal((await api(`/v1/sandboxes/${id}/fs/list?path=/tmp`)).status, 200)
    })

    it('declares a silent agent lost, cuts its link, and takes it back when it registers again', async () => {
      const quiet = await runAgent({ serverUrl: `127.0.0.1:${server.fleet!.port}`, token: server.fleet!.joinToken, dataDir: join(dir, 'quiet'), local: createFakeAgent(), insecure, heartbeatMs: 60_000 })
      try {
        const seen = async (state: string): Promise<boolean> => (await listAgents()).some((a) => a.id === quiet.agentId && a.state === state)
        await until('the quiet agent lost', () => seen('lost'))
        await until('the quiet agent back', () => seen('live'))
      } finally {
        await quiet.close()
      }
    })

    it('refuses an agent with a wrong token', async () => {
      const wrong = server.fleet!.joinToken.replace(/\.[^.]+$/, '.wrongwrongwrongwrongwrong')
      const rogue = createFakeAgent()
      const before = (await listAgents()).filter((a) => a.state === 'live').length
      if (insecure) {
        const agent = await runAgent({ serverUrl: `127.0.0.1:${server.fleet!.port}`, token: wrong, dataDir: join(dir, 'rogue'), local: rogue, insecure, heartbeatMs: 100 })
        // It dials and is refused on every try; it never shows up.
        await new Promise((r) => setTimeout(r, 500))
        await agent.close()
      } else {
        await assert.rejects(runAgent({ serverUrl: `127.0.0.1:${server.fleet!.port}`, token: wrong, dataDir: join(dir, 'rogue'), local: rogue }), /refused/)
      }
      assert.equal((await listAgents()).filter((a) => a.state === 'live').length, before)
    })

    it('rotates the join token: the old one joins no new host, the new one does, and joined agents stay', { skip: insecure && 'an --insecure agent presents the token on every call: it needs the new one' }, async () => {
      const old = server.fleet!.joinToken
      const before = (await listAgents()).filter((a) => a.state === 'live').length
      const res = await api('/v1/fleet/join-token', { method: 'POST' })
      assert.equal(res.status, 200)
      const { joinToken } = (await res.json()) as { joinToken: string }
      assert.notEqual(joinToken, old)
      assert.equal(server.fleet!.joinToken, joinToken)
      assert.equal((await readFile(join(dir, 'server', 'fleet', 'join-token'), 'utf8')).trim(), joinToken)
      await assert.rejects(runAgent({ serverUrl: `127.0.0.1:${server.fleet!.port}`, token: old, dataDir: join(dir, 'rotated-old'), local: createFakeAgent() }), /refused/)
      const fresh = await runAgent({ serverUrl: `127.0.0.1:${server.fleet!.port}`, token: joinToken, dataDir: join(dir, 'rotated-new'), local: createFakeAgent(), heartbeatMs: 100 })
      try {
        await until('the new host live beside the others', async () => (await listAgents()).filter((a) => a.state === 'live').length === before + 1)
      } finally {
        await fresh.close()
      }
    })
  })
}

describe('fleet settings: the server sets the heartbeat interval', () => {
  let dir: string
  let server: RunningServer | undefined

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-fleet-settings-'))
  })
  after(async () => {
    await server?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('refuses a heartbeat interval that is not shorter than the time to be lost', async () => {
    await assert.rejects(
      startServer({ dataDir: join(dir, 'bad'), port: 0, logger: silentLogger(), fleet: { port: 0, heartbeatMs: 2000, lostAfterMs: 2000 } }),
      /must be shorter/,
    )
  })

  it("tells agents its interval, which replaces the agent's own", async () => {
    server = await startServer({ dataDir: join(dir, 'server'), port: 0, logger: silentLogger(), fleet: { port: 0, heartbeatMs: 50, lostAfterMs: 5000 } })
    // On its own, this agent would beat once a minute.
    const agent = await runAgent({ serverUrl: `127.0.0.1:${server.fleet!.port}`, token: server.fleet!.joinToken, dataDir: join(dir, 'agent'), local: createFakeAgent(), heartbeatMs: 60_000 })
    try {
      const beat = async (): Promise<string | undefined> => {
        const res = await fetch(`${server!.url}/v1/agents`, { headers: { authorization: `Bearer ${server!.apiKey}` } })
        return ((await res.json()) as { agents: { lastHeartbeatAt: string; metrics: unknown }[] }).agents.find((a) => a.metrics)?.lastHeartbeatAt
      }
      const first = await until('a first heartbeat', beat)
      const later = await until('another heartbeat', async () => {
        const at = await beat()
        return at !== first && at
      })
      assert.ok(Date.parse(later) > Date.parse(first))
    } finally {
      await agent.close()
    }
  })
})
