/**
 * Usage sampled over a sandbox's life, read with the unmodified `e2b` SDK (getMetrics, instance
 * and static), Sandstorm's SDK and the `sandstorm metrics` CLI, against a real stack sampling every
 * 200 ms: load shows in later samples, samples are ordered and spaced by the interval, a range
 * answers what lies within it, a paused sandbox is sampled without waking, a killed one is gone.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { NotFoundError, Sandbox, SandboxError, type SandboxMetrics as E2bMetrics } from 'e2b'
import { NotFoundError as SandstormNotFound, Sandbox as SandstormSandbox } from '@sandstorm/sdk'
import { useStackForE2b } from './helpers/e2b-env.js'
import { runCli, type CliResult } from './helpers/cli-process.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason()
const intervalMs = 200
const MiB = 2 ** 20

describe('e2b SDK: metrics sampled over the sandbox\'s life', { skip: skip ?? false }, () => {
  let stack: Stack
  let sbx: Sandbox

  before(async () => {
    stack = await startStack({ metricsIntervalMs: intervalMs })
    useStackForE2b(stack)
    sbx = await Sandbox.create('base', { timeoutMs: 600_000 })
  })
  after(async () => {
    await sbx?.kill().catch(() => undefined)
    await stack?.close()
  })

  /** Runs the CLI with the stack's URL and key. */
  const cli = (...args: string[]): Promise<CliResult> => runCli(stack, ...args)


  const after_ = (series: E2bMetrics[], at: number) => series.filter((m) => m.timestamp.getTime() > at)

  test('load shows in later samples: CPU, memory and disk', async () => {
    const idle = await until('two idle samples', async () => ((await sbx.getMetrics()).length >= 2 ? sbx.getMetrics() : null), 120_000)
    const first = idle[0]!
    const info = await sbx.getInfo()
    assert.equal(first.cpuCount, info.cpuCount)
    assert.equal(first.memTotal, info.memoryMB * MiB)
    assert.ok(first.diskTotal > 512 * MiB, `diskTotal ${first.diskTotal}`)
    assert.ok(first.memUsed > 0 && first.memUsed < first.memTotal, `memUsed ${first.memUsed}`)
    const memBefore = Math.max(...idle.map((m) => m.memUsed))
    const diskBefore = Math.max(...idle.map((m) => m.diskUsed))
    const cpuBefore = Math.max(...idle.map((m) => m.cpuUsedPct))

    const loadedAt = Date.now()
    // Two busy loops (a sandbox of 1 CPU gets its share of a busy host), 160 MiB held, 64 MiB written.
    await sbx.commands.run("for i in 1 2; do timeout 120 sh -c 'while :; do :; done' & done", { background: true })
    await sbx.commands.run(`python3 -c "import time; b = b'x' * (160 << 20); time.sleep(120)"`, { background: true })
    await sbx.commands.run('head -c 64M /dev/urandom > $HOME/blob && sync', { timeoutMs: 120_000 })

    await until('a sample with the CPU busy', async () => after_(await sbx.getMetrics(), loadedAt).some((m) => m.cpuUsedPct >= Math.max(10, cpuBefore + 5)), 120_000)
    await until('a sample with 160 MiB more memory', async () => after_(await sbx.getMetrics(), loadedAt).some((m) => m.memUsed >= memBefore + 140 * MiB), 120_000)
    await until('a sample with 64 MiB more on disk', async () => after_(await sbx.getMetrics(), loadedAt).some((m) => m.diskUsed >= diskBefore + 56 * MiB), 120_000)
    for (const m of await sbx.getMetrics()) {
      assert.ok(m.cpuUsedPct >= 0 && m.cpuUsedPct <= 100, `cpuUsedPct ${m.cpuUsedPct}`)
      assert.ok(m.memUsed <= m.memTotal && m.diskUsed <= m.diskTotal)
    }
    // A bracket, so that the pattern does not match this shell's own command line.
    await sbx.commands.run('pkill -f "whil[e] :"; pkill python3; true')
  })

  test('samples are ordered, spaced by the interval, and a range answers those within it', async () => {
    // The range check below needs samples over two whole seconds: on a loaded host the test before
    // may end sooner than that after the first sample, so the series is awaited, not assumed.
    const spansTwoSeconds = (t: number[]) => t.length >= 5 && Math.floor(t.at(-1)! / 1000) - 1 >= Math.ceil(t[1]! / 1000)
    const series = await until('samples over two whole seconds', async () => {
      const got = await sbx.getMetrics()
      return spansTwoSeconds(got.map((m) => m.timestamp.getTime())) ? got : null
    }, 60_000)
    const times = series.map((m) => m.timestamp.getTime())
    // Never closer than the interval by the wall clock the samples are stamped with, however early a timer fires.
    for (let i = 1; i < times.length; i++) assert.ok(times[i]! - times[i - 1]! >= intervalMs, `samples ${i - 1} and ${i} are ${times[i]! - times[i - 1]!} ms apart`)

    // The SDK sends whole seconds; the server takes `end` to the end of its second.
    const fromS = Math.ceil(times[1]! / 1000)
    const toS = Math.floor(times.at(-1)! / 1000) - 1
    assert.ok(toS >= fromS, 'the series spans two seconds or more')
    const ranged = await sbx.getMetrics({ start: new Date(fromS * 1000), end: new Date(toS * 1000) })
    const expected = series.filter((m) => m.timestamp.getTime() >= fromS * 1000 && m.timestamp.getTime() < (toS + 1) * 1000)
    assert.ok(ranged.length > 0)
    assert.deepEqual(ranged, expected)
    // The static form answers the same.
    assert.deepEqual(await Sandbox.getMetrics(sbx.sandboxId, { start: new Date(fromS * 1000), end: new Date(toS * 1000) }), expected)
    // An end before the start is the SDK's 400, naming the parameter.
    await assert.rejects(sbx.getMetrics({ start: new Date(toS * 1000 + 5000), end: new Date(fromS * 1000) }), (err: unknown) => err instanceof SandboxError && /^400: end: expected a Unix time at or after start/.test(err.message))
    const raw = await fetch(`${stack.server.url}/sandboxes/${sbx.sandboxId}/metrics?start=soon`, { headers: { 'x-api-key': process.env.E2B_API_KEY! } })
    assert.equal(raw.status, 400)
    assert.match(((await raw.json()) as { message: string }).message, /^start: expected a Unix time in seconds, got "soon"/)
  })

  test("Sandstorm's SDK and CLI give the same series", async () => {
    const endS = Math.floor(Date.now() / 1000) - 1
    const e2b = await sbx.getMetrics({ end: new Date(endS * 1000) })
    const ours = await SandstormSandbox.getMetrics(sbx.sandboxId, { ...stack.conn, end: new Date(endS * 1000 + 999) })
    const asE2b = (m: (typeof ours)[number]) => ({
      timestamp: new Date(m.timestamp),
      cpuUsedPct: m.cpuUsedPct,
      cpuCount: Math.max(1, Math.round(m.cpus)),
      memUsed: m.memoryUsedBytes,
      memTotal: m.memoryLimitBytes,
      memCache: 0,
      diskUsed: m.diskUsedBytes,
      diskTotal: m.diskLimitBytes,
    })
    assert.ok(e2b.length >= 5)
    assert.deepEqual(ours.map(asE2b), e2b)

    const json = await cli('metrics', sbx.sandboxId, '--json')
    assert.equal(json.code, 0, json.stderr)
    const fromCli = (JSON.parse(json.stdout) as typeof ours).filter((m) => Date.parse(m.timestamp) < (endS + 1) * 1000)
    assert.deepEqual(fromCli, ours)
    const table = await cli('metrics', sbx.sandboxId, '--since', '2s')
    assert.equal(table.code, 0, table.stderr)
    const lines = table.stdout.trimEnd().split('\n')
    assert.match(lines[0]!, /^TIME\s+CPU\s+CPUS\s+MEMORY\s+DISK\s+PIDS$/)
    // About 2 s of samples at 200 ms, whatever the load did to the ticks.
    assert.ok(lines.length >= 2 && lines.length <= 2000 / intervalMs + 2, `${lines.length - 1} rows`)
    assert.match(lines[1]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+\d+\.\d%\s+[\d.]+\s+\d+\.\dMiB\/\d+\.\dMiB\s+\d+\.\dMiB\/\d+\.\dMiB\s+\d+$/)
  })

  test('a paused sandbox is sampled without waking it, idle', async () => {
    await sbx.pause()
    const pausedAt = Date.now()
    const later = await until('two samples after the pause', async () => {
      const s = after_(await sbx.getMetrics(), pausedAt + intervalMs)
      return s.length >= 2 ? s : null
    }, 120_000)
    assert.ok(later.every((m) => m.cpuUsedPct === 0), `cpu while paused: ${later.map((m) => m.cpuUsedPct).join(', ')}`)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused')
  })

  test('after kill, getMetrics is NotFoundError on every surface', async () => {
    const id = sbx.sandboxId
    await Sandbox.kill(id)
    await assert.rejects(Sandbox.getMetrics(id), NotFoundError)
    await assert.rejects(SandstormSandbox.getMetrics(id, stack.conn), SandstormNotFound)
    const gone = await cli('metrics', id)
    assert.equal(gone.code, 3, gone.stderr)
    assert.match(gone.stderr, /not found/)
  })
})
