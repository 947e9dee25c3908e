import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import type { AgentSandboxStats } from '../agent/index.js'
import { silentLogger } from '../shared/index.js'
import { createSandboxCatalog, type SandboxRecord } from './catalog.js'
import { openDatabase } from './db.js'
import { cpuPercent } from './sandbox-usage.js'
import { createUsageHistory } from './usage-history.js'
import { startUsageRecorder } from './usage-recorder.js'

const MiB = 2 ** 20

const record = (id: string, state: SandboxRecord['state'] = 'running'): SandboxRecord => ({
  id,
  template: 'debian',
  runtime: 'runc',
  state,
  memoryMiB: 256,
  cpus: 2,
  pidsMax: 64,
  diskMiB: 1024,
  labels: {},
  env: {},
  network: 'none',
  createdAtMs: Date.now(),
  expiresAtMs: Date.now() + 60_000,
})

/** A real catalog and history on a fresh database, and an agent whose counters the test sets. */
function setup(maxSamples?: number) {
  const dir = mkdtempSync(join(tmpdir(), 'sandstorm-usage-test-'))
  const db = openDatabase(dir)
  const catalog = createSandboxCatalog(db)
  const history = createUsageHistory(db, { maxSamples })
  const counters = new Map<string, AgentSandboxStats>()
  const asked: string[][] = []
  const agent = {
    async statsMany(ids: string[]) {
      asked.push(ids)
      return Object.fromEntries(ids.flatMap((id) => (counters.has(id) ? [[id, counters.get(id)!]] : [])))
    },
  }
  const stop = new AbortController()
  // The timer is an hour away: the test ticks by hand.
  const recorder = startUsageRecorder({ agent, catalog, history, intervalMs: 3_600_000, logger: silentLogger(), signal: stop.signal })
  const close = () => {
    stop.abort()
    db.close()
    rmSync(dir, { recursive: true, force: true })
  }
  return { db, catalog, history, counters, asked, recorder, close }
}

const stats = (cpuNanos: number, memoryBytes = 100 * MiB): AgentSandboxStats => ({ cpuNanos, memoryBytes, pids: 3, diskUsedBytes: 5 * MiB, diskLimitBytes: 0 })

test('cpuPercent is the share of all of the sandbox\'s CPUs, clamped, and idle when the counter went back', () => {
  // 2 CPUs for 1 s is 2e9 ns: 1e9 ns used is half.
  assert.equal(cpuPercent({ cpuNanos: 0, atMs: 0 }, { cpuNanos: 1e9, atMs: 1000 }, 2), 50)
  assert.equal(cpuPercent({ cpuNanos: 0, atMs: 0 }, { cpuNanos: 1e9 / 3, atMs: 1000 }, 1), 33.33)
  assert.equal(cpuPercent({ cpuNanos: 0, atMs: 0 }, { cpuNanos: 5e9, atMs: 1000 }, 1), 100)
  assert.equal(cpuPercent({ cpuNanos: 5e9, atMs: 0 }, { cpuNanos: 1e6, atMs: 1000 }, 1), 0)
})

test('one batched call a tick for running and paused sandboxes; a sample once a CPU reading came before it', async () => {
  const t = setup()
  try {
    t.catalog.insert(record('sb-aaaaaaaaaaaaaaaa'))
    t.catalog.insert(record('sb-pppppppppppppppp', 'paused'))
    t.catalog.insert(record('sb-ssssssssssssssss', 'stopped'))
    t.counters.set('sb-aaaaaaaaaaaaaaaa', stats(0))
    t.counters.set('sb-pppppppppppppppp', stats(7e9))
    await t.recorder.tick()
    assert.deepEqual(t.asked, [['sb-aaaaaaaaaaaaaaaa', 'sb-pppppppppppppppp']], 'one call, stopped sandboxes left out')
    assert.equal(t.history.count('sb-aaaaaaaaaaaaaaaa'), 0, 'the first look only reads the CPU counter')

    t.counters.set('sb-aaaaaaaaaaaaaaaa', stats(4e9, 200 * MiB))
    await t.recorder.tick()
    // A tick's time is at least 1 ms past the last one's, so two ticks in one millisecond put the second ahead of Date.now().
    const [a] = t.history.range('sb-aaaaaaaaaaaaaaaa', 0, Number.MAX_SAFE_INTEGER)
    assert.ok(a && a.cpuUsedPct > 0 && a.cpuUsedPct <= 100, `cpu ${a?.cpuUsedPct}`)
    assert.deepEqual({ ...a, timestamp: undefined, cpuUsedPct: undefined }, {
      timestamp: undefined, cpuUsedPct: undefined, cpus: 2, memoryUsedBytes: 200 * MiB, memoryLimitBytes: 256 * MiB, diskUsedBytes: 5 * MiB, diskLimitBytes: 1024 * MiB, pids: 3,
    })
    const [p] = t.history.range('sb-pppppppppppppppp', 0, Number.MAX_SAFE_INTEGER)
    assert.equal(p?.cpuUsedPct, 0, 'a paused sandbox is sampled, idle')
  } finally {
    t.close()
  }
})

test('a sandbox the agent cannot measure is skipped; one gone from the catalog loses its samples', async () => {
  const t = setup()
  try {
    t.catalog.insert(record('sb-aaaaaaaaaaaaaaaa'))
    t.catalog.insert(record('sb-bbbbbbbbbbbbbbbb'))
    t.counters.set('sb-aaaaaaaaaaaaaaaa', stats(0))
    for (let i = 0; i < 3; i++) await t.recorder.tick()
    assert.equal(t.history.count('sb-aaaaaaaaaaaaaaaa'), 2)
    assert.equal(t.history.count('sb-bbbbbbbbbbbbbbbb'), 0)
    t.catalog.delete('sb-aaaaaaaaaaaaaaaa')
    await t.recorder.tick()
    assert.equal(t.history.count('sb-aaaaaaaaaaaaaaaa'), 0)
  } finally {
    t.close()
  }
})

test('the history keeps at most maxSamples per sandbox, the newest, oldest first', () => {
  const t = setup(10)
  try {
    const sample = (atMs: number) => ({ sandboxId: 'sb-aaaaaaaaaaaaaaaa', atMs, cpus: 1, cpuUsedPct: 1, memoryUsedBytes: 1, memoryLimitBytes: 2, diskUsedBytes: 3, diskLimitBytes: 4, pids: 1 })
    for (let at = 1; at <= 40; at++) t.history.append([sample(at)])
    const kept = t.history.range('sb-aaaaaaaaaaaaaaaa', 0, 100).map((m) => Date.parse(m.timestamp))
    assert.ok(kept.length >= 10 && kept.length <= 18, `kept ${kept.length}`)
    assert.deepEqual(kept, [...kept].sort((a, b) => a - b))
    assert.equal(kept.at(-1), 40)
    assert.deepEqual(t.history.range('sb-aaaaaaaaaaaaaaaa', 38, 39).map((m) => Date.parse(m.timestamp)), [38, 39], 'both ends inclusive')
  } finally {
    t.close()
  }
})

test('samples outlive a restart of the history, and a sandbox gone meanwhile loses them at the first tick', async () => {
  const t = setup()
  try {
    t.catalog.insert(record('sb-aaaaaaaaaaaaaaaa'))
    t.history.append([{ sandboxId: 'sb-aaaaaaaaaaaaaaaa', atMs: 5, cpus: 1, cpuUsedPct: 1, memoryUsedBytes: 1, memoryLimitBytes: 2, diskUsedBytes: 3, diskLimitBytes: 4, pids: 1 }])
    t.history.append([{ sandboxId: 'sb-gggggggggggggggg', atMs: 5, cpus: 1, cpuUsedPct: 1, memoryUsedBytes: 1, memoryLimitBytes: 2, diskUsedBytes: 3, diskLimitBytes: 4, pids: 1 }])
    const again = createUsageHistory(t.db)
    const stop = new AbortController()
    const recorder = startUsageRecorder({ agent: { statsMany: async () => ({}) }, catalog: t.catalog, history: again, intervalMs: 3_600_000, logger: silentLogger(), signal: stop.signal })
    await recorder.tick()
    stop.abort()
    assert.equal(again.count('sb-aaaaaaaaaaaaaaaa'), 1)
    assert.equal(again.count('sb-gggggggggggggggg'), 0)
  } finally {
    t.close()
  }
})
