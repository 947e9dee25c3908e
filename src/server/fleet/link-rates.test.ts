/**
 * How often an agent may beat and open a link: the gates alone on a given clock, then on a real
 * gRPC link where an agent with a valid identity floods heartbeats and reconnects in a loop, and
 * the server's writes to its database (SQLite's total_changes) are counted.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import * as grpc from '@grpc/grpc-js'
import { runAgent } from '../../agent/index.js'
import { SandstormError } from '../../shared/index.js'
import { createSandboxCatalog } from '../catalog.js'
import { openDatabase, type CatalogDb } from '../db.js'
import { createFakeAgent } from '../fake-agent.fixture.js'
import { captureLogs, type LogCapture } from '../test-server.fixture.js'
import { hostileAgent, within } from './hostile-agent.fixture.js'
import { startFleet, type Fleet } from './index.js'
import { createHeartbeatGate, createReconnectGate } from './link-rates.js'
import { until } from '../../../test/helpers/until.js'

const heartbeat = { load1: 0, memoryFreeMib: 1024, memoryTotalMib: 2048, diskFreeMib: 1024, sandboxes: 0, templatesJson: '' }

describe('the heartbeat gate', () => {
  it('keeps an honest agent\'s beats, late and early ones among them', () => {
    const gate = createHeartbeatGate(1000)
    assert.equal(gate.minGapMs, 500)
    // The beat after registration, then beats at 1 s give or take 400 ms.
    const times = [0, 5, 1000, 1900, 2300, 3000, 4400, 4800, 6000]
    assert.deepEqual(times.map((t) => gate.admit(t)), times.map(() => 'keep'))
  })

  it('drops beats past the burst, and ends the link once ten in a row are dropped', () => {
    const gate = createHeartbeatGate(1000)
    const verdicts = Array.from({ length: 20 }, (_, i) => gate.admit(i * 0.01))
    assert.deepEqual(verdicts.slice(0, 3), ['keep', 'keep', 'keep'])
    assert.deepEqual(verdicts.slice(3, 13), Array(10).fill('drop'))
    assert.equal(verdicts[13], 'end')
  })

  it('takes its gap from the options, and has a floor when the server tells no interval', () => {
    assert.equal(createHeartbeatGate(undefined).minGapMs, 50)
    assert.equal(createHeartbeatGate(1000, { minHeartbeatGapMs: 100 }).minGapMs, 100)
    // A gap of 0 made every beat NaN tokens: all dropped, and the link ended.
    assert.throws(() => createHeartbeatGate(1000, { minHeartbeatGapMs: 0 }), /minHeartbeatGapMs: expected a positive number of milliseconds, got 0/)
  })
})

describe('the reconnect gate', () => {
  it('forgets agents whose last link closed long ago: made-up ids do not pile up', () => {
    const gate = createReconnectGate({ firstReconnectDelayMs: 1000, maxReconnectDelayMs: 4000, stableLinkMs: 10_000 })
    for (let i = 0; i < 1000; i++) {
      const v = gate.admit(`ag-${i}`, 0)
      assert.ok(v.open)
      v.closed(1)
    }
    const still = gate.admit('ag-open', 0)
    assert.equal(gate.size, 1001)
    // Past the stable time and the longest wait, the closed ones go; the open link stays known.
    assert.ok(gate.admit('ag-new', 1 + 10_000 + 4000 + 1).open)
    assert.equal(gate.size, 2)
    assert.ok(still.open)
  })

  it('doubles the wait after each short-lived link, and opens at once after a stable one', () => {
    const gate = createReconnectGate({ firstReconnectDelayMs: 1000, maxReconnectDelayMs: 4000, stableLinkMs: 10_000 })
    const open = (at: number, lastsMs: number): void => {
      const v = gate.admit('ag-a', at)
      assert.ok(v.open, `refused at ${at}`)
      v.closed(at + lastsMs)
    }
    open(0, 0)
    open(1, 0)
    // The second short link asks for a wait of 1 s before the third.
    assert.deepEqual(gate.admit('ag-a', 2), { open: false, retryAfterMs: 999, firstRefusal: true })
    assert.deepEqual(gate.admit('ag-a', 3), { open: false, retryAfterMs: 998, firstRefusal: false })
    open(1001, 0)
    assert.equal((gate.admit('ag-a', 2000) as { retryAfterMs: number }).retryAfterMs, 1001)
    open(3001, 0)
    open(7001, 20_000)
    assert.equal((gate.admit('ag-a', 7002) as { retryAfterMs: number }).retryAfterMs, 3999, 'capped at the max')
    // That link lasted 20 s: the next one opens at once, and the one after that too.
    open(11_001, 0)
    assert.ok(gate.admit('ag-a', 11_002).open)
    // Another agent is not held by this one's waits.
    assert.ok(gate.admit('ag-b', 11_003).open)
  })
})

describe('link rates on a real link', () => {
  let dir: string
  let db: CatalogDb
  let fleet: Fleet
  let logs: LogCapture
  /** Rows written, updated or deleted through the server's connection so far. */
  const writes = (): number => db.prepare<[], { n: number }>('SELECT total_changes() AS n').get()!.n

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-link-rates-'))
    db = openDatabase(dir)
    logs = captureLogs()
    fleet = await startFleet({
      dataDir: dir, db, catalog: createSandboxCatalog(db), logger: logs.logger, port: 0, insecure: true,
      heartbeatMs: 60_000, lostAfterMs: 600_000,
      // A flapping agent waits a minute: longer than this test runs, so every early link is refused.
      linkRates: { firstReconnectDelayMs: 60_000, maxReconnectDelayMs: 120_000 },
    })
  })
  after(async () => {
    await fleet.close()
    db.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('drops heartbeats sent in a tight loop unread, writes a bounded few, and ends the link saying why', async () => {
    const agent = hostileAgent(fleet.port, fleet.joinToken, 'ag-flooderflooder01')
    try {
      agent.register()
      await until('the flooder to be live', async () => fleet.registry.get(agent.agentId)?.state === 'live')
      const before = writes()
      for (let i = 0; i < 2000; i++) agent.send({ heartbeat: { ...heartbeat, load1: i } })
      // The link ends, or (without a limit) the last heartbeat is taken in.
      const lastTaken = until('the last heartbeat taken in', async () => fleet.registry.get(agent.agentId)?.metrics?.load1 === 1999, 10_000)
      const end = await within(Promise.race([agent.ended, lastTaken.then(() => 'all taken' as const, () => 'not all taken' as const)]), 10_000, 'the flooding link to end')
      // The burst of three is kept (one row each); the 1997 after it were never written.
      assert.ok(writes() - before <= 3, `${writes() - before} rows written for 2000 heartbeats`)
      assert.ok(typeof end !== 'string', `the link did not end: ${end}`)
      assert.equal(end.code, grpc.status.RESOURCE_EXHAUSTED)
      assert.match(end.details, /heartbeats far more often than one per 30000 ms/)
      assert.ok(fleet.registry.get(agent.agentId)!.metrics!.load1 <= 2)
      const line = await logs.waitFor((r) => r.msg === 'ended a link: heartbeats far more often than allowed')
      assert.equal(line.agentId, agent.agentId)
    } finally {
      agent.close()
    }
  })

  it('refuses an agent that reconnects in a loop, saying when to retry, and writes nothing for the refused links', async () => {
    const id = 'ag-flapperflapper01'
    const opened = []
    for (let i = 0; i < 2; i++) {
      const agent = hostileAgent(fleet.port, fleet.joinToken, id)
      agent.register()
      await within(agent.accepted, 10_000, `link ${i} to be accepted`)
      await until(`link ${i} registered`, async () => fleet.registry.get(id)?.conn != null)
      agent.close()
      opened.push(agent)
    }
    const before = writes()
    for (let i = 0; i < 20; i++) {
      const agent = hostileAgent(fleet.port, fleet.joinToken, id)
      agent.register()
      const end = await within(agent.ended, 10_000, `link ${i + 2} to be refused`)
      agent.close()
      assert.equal(end.code, grpc.status.RESOURCE_EXHAUSTED, end.details)
      assert.match(end.details, /reconnects too often: retry after \d+ ms/)
      const retryAfterMs = Number(end.trailers?.get('x-sandstorm-retry-after-ms')[0])
      assert.ok(retryAfterMs > 0 && retryAfterMs <= 60_000, `retry after ${retryAfterMs}`)
    }
    assert.equal(writes() - before, 0, 'a refused link wrote to the database')
    // One log line for the wait, not one per refusal.
    assert.equal(logs.records.filter((r) => r.msg === 'refused a link: the agent reconnects too often' && r.agentId === id).length, 1)
  })

  it('an honest agent waits as long as a refusal asks', async () => {
    const agentLogs = captureLogs()
    const agent = await runAgent({ serverUrl: `127.0.0.1:${fleet.port}`, token: fleet.joinToken, dataDir: join(dir, 'honest'), local: createFakeAgent(), insecure: true, logger: agentLogs.logger })
    try {
      // Two links cut at once: the second asks for a minute's wait before a third.
      for (let i = 0; i < 2; i++) {
        const conn = await until(`link ${i}`, async () => fleet.registry.get(agent.agentId)?.conn ?? false)
        conn.fail(new SandstormError('unavailable', 'cut by the test'))
        await until(`link ${i} replaced`, async () => fleet.registry.get(agent.agentId)?.conn !== conn)
      }
      const refused = agentLogs.waitFor((r) => r.msg === 'link to the server lost; reconnecting' && /too often/.test(String(r.reason)))
      const waited = await within(refused, 10_000, 'a refusal of the third link')
      assert.ok(Number(waited.retryMs) > 50_000, `waited ${String(waited.retryMs)} ms`)
    } finally {
      await agent.close()
    }
  })
})
