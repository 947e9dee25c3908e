/**
 * A compromised agent's answers to the server's calls, over the real link: each is checked, and a
 * bad or missing one costs that agent's own answer only, never the fleet's creates, listings or
 * usage samples, nor another agent's sandboxes or snapshots.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { SandboxInfo, SandboxMetrics, SnapshotInfo, TemplateInfo } from '../../shared/index.js'
import { plainAnswer, silence, startHostileFleet } from './hostile-agent.fixture.js'
import type { HostileAgent, HostileFleet } from './hostile-agent.fixture.js'
import { until } from '../../../test/helpers/until.js'

const debian = (over: Partial<TemplateInfo>): TemplateInfo => ({ name: 'debian', version: 9, description: 'forged', sizeBytes: 1, buildMs: 1, builtAt: '2024-01-01T00:00:00.000Z', defaults: { memoryMiB: 512, cpus: 1 }, ...over })

describe("a hostile agent's answers", () => {
  let fleet: HostileFleet
  // Registered before the honest agent: first in every list of the fleet.
  let badTemplates: HostileAgent[]
  let placed: HostileAgent
  const templates = async (): Promise<TemplateInfo[]> => {
    const res = await fleet.api('/v1/templates')
    assert.equal(res.status, 200, await res.clone().text())
    return (await res.json()) as TemplateInfo[]
  }

  before(async () => {
    fleet = await startHostileFleet({ server: { metricsIntervalMs: 50 }, fleet: { answerTimeoutMs: 500 } })
    badTemplates = []
    for (const [i, answer] of [[null], '', {}, silence].entries()) {
      const h = await fleet.hostile(10 + i)
      h.answerWith((kind, payload) => (kind === 'templates' ? answer : plainAnswer(kind, payload)))
      badTemplates.push(h)
    }
    placed = await fleet.hostile(20, { labelsJson: JSON.stringify({ zone: 'a' }), templatesJson: JSON.stringify(['debian']) })
    await fleet.startHonest({ zone: 'b' })
  })
  after(() => fleet.close())

  it("to templates that are malformed, or that never come, leave out that agent's templates only", async () => {
    assert.deepEqual((await templates()).map((t) => t.name).sort(), ['debian', 'host'])
    assert.ok(await fleet.create({ 'agent.zone': 'b' }))
    assert.ok(badTemplates.every((h) => h.asked.some((a) => a.kind === 'templates')), 'every hostile agent was asked')
  })

  it("cannot stand in for a golden template on another agent's snapshot", async () => {
    const id = await fleet.create({ 'agent.zone': 'b' })
    const snap = (await (await fleet.api(`/v1/sandboxes/${id}/snapshots`, { method: 'POST', body: '{}' })).json()) as SnapshotInfo
    badTemplates[0]!.answerWith((kind, payload) => (kind === 'templates' ? [debian({ snapshotId: snap.id, defaults: { memoryMiB: 65536, cpus: 64 } })] : plainAnswer(kind, payload)))
    const found = (await templates()).find((t) => t.name === 'debian')
    assert.deepEqual(found?.defaults, { memoryMiB: 512, cpus: 1 }, "the hostile agent's claim set the defaults of every create of debian")
  })

  it('to a create with a runtime or status of no kind we know are refused, and nothing is kept', async () => {
    for (const forged of [{ runtime: 'x'.repeat(4096), status: 'running' }, { runtime: 'runc', status: 'owned' }]) {
      placed.answerWith((kind, payload) => (kind === 'create' ? { id: (payload as { id: string }).id, template: 'debian', ...forged } : plainAnswer(kind, payload)))
      const res = await fleet.api('/v1/sandboxes', { method: 'POST', body: JSON.stringify({ template: 'debian', labels: { 'agent.zone': 'a' } }) })
      assert.equal(res.status, 500, await res.clone().text())
    }
    const listed = (await (await fleet.api('/v1/sandboxes')).json()) as SandboxInfo[] | { sandboxes: SandboxInfo[] }
    const all = Array.isArray(listed) ? listed : listed.sandboxes
    assert.deepEqual(all.filter((s) => s.runtime !== 'runc' || s.state !== 'running'), [])
    placed.answerWith(plainAnswer)
  })

  it("to statsMany cost only their own samples, never another agent's, and a silent one holds up no tick", async () => {
    // The honest agent's sandbox first: the old router merged the agents' answers in this order, the hostile one's last.
    const honest = await fleet.create({ 'agent.zone': 'b' })
    const own = await fleet.create({ 'agent.zone': 'a' })
    const sample = { memoryBytes: 666, cpuNanos: 1, pids: 1, diskUsedBytes: 0, diskLimitBytes: 0 }
    placed.answerWith((kind, payload) => (kind === 'statsMany' ? { [own]: { ...sample, memoryBytes: null }, [honest]: sample } : plainAnswer(kind, payload)))
    const series = async (id: string): Promise<SandboxMetrics[]> => (await (await fleet.api(`/v1/sandboxes/${id}/metrics`)).json()) as SandboxMetrics[]
    const statsAsked = (from: number): number => placed.asked.slice(from).filter((a) => a.kind === 'statsMany').length
    const from = placed.asked.length
    await until('the hostile agent to answer two ticks', async () => statsAsked(from) >= 2)
    const before = (await series(honest)).length
    const seen = await until("the honest agent's sandbox to be sampled on", async () => ((await series(honest)).length >= before + 2 ? series(honest) : undefined))
    assert.deepEqual(new Set(seen.map((s) => s.memoryUsedBytes)), new Set([1 << 20]), "another agent's numbers reached the honest agent's sandbox")
    assert.deepEqual(await series(own), [])
    placed.answerWith((kind, payload) => (kind === 'statsMany' ? silence : plainAnswer(kind, payload)))
    const silent = placed.asked.length
    await until('a silent agent to be asked again', async () => statsAsked(silent) >= 2)
    await until('the samples to go on', async () => (await series(honest)).length >= seen.length + 2)
    placed.answerWith(plainAnswer)
  })

  it("to a snapshot take cannot choose its label, sandbox, template or time", async () => {
    const id = await fleet.create({ 'agent.zone': 'a' })
    const snapshotOf = (over: object) => (kind: string, payload: unknown) =>
      kind === 'snapshots.take'
        ? { id: `snap-${Math.random().toString(36).slice(2, 10).padEnd(16, '0')}`, parentId: null, sandboxId: id, template: 'debian', label: 'mine', driver: 'fake', depth: 1, memoryMiB: 512, cpus: 1, pidsMax: 256, diskMiB: 0, cwd: '/', createdAt: new Date().toISOString(), env: {}, ...over }
        : plainAnswer(kind, payload)
    const take = (label: string) => fleet.api(`/v1/sandboxes/${id}/snapshots`, { method: 'POST', body: JSON.stringify({ label }) })
    placed.answerWith(snapshotOf({ label: 'prod-base' }))
    assert.equal((await take('mine')).status, 500)
    placed.answerWith(snapshotOf({ sandboxId: 'sb-someoneelse0000' }))
    assert.equal((await take('mine')).status, 500)
    placed.answerWith(snapshotOf({ template: 'forged', createdAt: '2099-01-01T00:00:00.000Z' }))
    const res = await take('mine')
    assert.equal(res.status, 201, await res.clone().text())
    const snap = (await res.json()) as SnapshotInfo
    assert.equal(snap.template, 'debian')
    assert.ok(Math.abs(Date.parse(snap.createdAt) - Date.now()) < 60_000, `createdAt ${snap.createdAt} is the agent's word`)
    const all = (await (await fleet.api('/v1/snapshots')).json()) as SnapshotInfo[] | { snapshots: SnapshotInfo[] }
    const labels = (Array.isArray(all) ? all : all.snapshots).map((s) => s.label)
    assert.ok(!labels.includes('prod-base'), 'a refused take left a snapshot labelled as the agent chose')
    placed.answerWith(plainAnswer)
  })
})
