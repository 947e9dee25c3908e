/** Usage sampling across a fleet: one batched statsMany per agent a tick, over the real gRPC link. */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { runAgent } from '../../agent/index.js'
import type { AgentSandboxStats, RunningAgent } from '../../agent/index.js'
import { silentLogger } from '../../shared/index.js'
import type { SandboxMetrics } from '../../shared/index.js'
import { createFakeAgent } from '../fake-agent.fixture.js'
import { startServer } from '../index.js'

test('each agent is asked once a tick for the sandboxes it holds, and every sandbox gets its series', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-usage-fleet-'))
  const server = await startServer({ dataDir: join(dir, 'server'), port: 0, logger: silentLogger(), metricsIntervalMs: 50, fleet: { port: 0, insecure: true, lostAfterMs: 5000 } })
  const fakes = [createFakeAgent(), createFakeAgent()]
  const asked = fakes.map(() => [] as string[][])
  fakes.forEach((fake, i) => {
    const own = fake.statsMany.bind(fake)
    fake.statsMany = async (ids, o) => {
      asked[i]!.push(ids)
      return own(ids, o)
    }
  })
  const agents: RunningAgent[] = []
  const api = async (path: string, init: RequestInit = {}) =>
    fetch(`${server.url}${path}`, { ...init, headers: { authorization: `Bearer ${server.apiKey}`, 'content-type': 'application/json' } })
  try {
    for (const [i, fake] of fakes.entries()) agents.push(await runAgent({ serverUrl: `127.0.0.1:${server.fleet!.port}`, token: server.fleet!.joinToken, dataDir: join(dir, `agent-${i}`), local: fake, insecure: true, heartbeatMs: 100 }))
    for (;;) {
      const live = ((await (await api('/v1/agents')).json()) as { agents: { state: string }[] }).agents.filter((a) => a.state === 'live')
      if (live.length === 2) break
      await new Promise((r) => setTimeout(r, 25))
    }
    const ids: string[] = []
    for (let i = 0; i < 4; i++) ids.push(((await (await api('/v1/sandboxes', { method: 'POST', body: JSON.stringify({ template: 'debian' }) })).json()) as { id: string }).id)
    assert.deepEqual(fakes.map((f) => f.sandboxes.size), [2, 2])

    const series = async (id: string) => (await (await api(`/v1/sandboxes/${id}/metrics`)).json()) as SandboxMetrics[]
    for (const id of ids) {
      while ((await series(id)).length < 2) await new Promise((r) => setTimeout(r, 25))
    }
    fakes.forEach((fake, i) => {
      const held = [...fake.sandboxes.keys()].sort()
      const full = asked[i]!.filter((call) => call.length === 2)
      assert.ok(full.length >= 2, `agent ${i} was asked for both its sandboxes ${full.length} times`)
      for (const call of asked[i]!) assert.ok(call.every((id) => held.includes(id)), `agent ${i} was asked only about its own sandboxes, got ${call.join(', ')}`)
    })
    const [sample] = await series(ids[0]!)
    const stats: AgentSandboxStats = { memoryBytes: 1 << 20, cpuNanos: 1e6, pids: 1, diskUsedBytes: 0, diskLimitBytes: 0 }
    assert.equal(sample!.memoryUsedBytes, stats.memoryBytes)
    assert.equal(sample!.pids, stats.pids)
  } finally {
    for (const a of agents) await a.close()
    await server.close()
    await rm(dir, { recursive: true, force: true })
  }
})
