/**
 * fleet: the exec round trip through server → remote agent over the gRPC link (server and three
 * agents as separate processes on 127.0.0.1) beside the in-process `sandstorm up` figure of the
 * same run, and 1,000 execs at concurrency 50 across the three agents.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ResultPromise } from 'execa'
import { listAgents, Sandbox } from '@sandstorm/sdk'
import { startAgentProcess, startServerProcess, type ServerProcess } from '../test/helpers/fleet-processes.js'
import { mapLimit } from './concurrency.js'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import type { BenchResult } from './report.js'
import { nowMs, summarize } from './stats.js'

const defaultIterations = 200
const warmupRuns = 10
const burstExecs = 1000
const burstConcurrency = 50

async function run(sandbox: Sandbox): Promise<number> {
  const start = nowMs()
  const r = await sandbox.commands.run(['true'])
  if (r.exitCode !== 0) throw new Error(`true exited ${r.exitCode}`)
  return nowMs() - start
}

/**
 * Round trips on both stacks, one after the other in turn: load from elsewhere on the host then
 * weighs on both figures alike instead of on whichever ran while it lasted.
 */
async function roundTrips(local: Sandbox, remote: Sandbox, n: number, signal: AbortSignal): Promise<{ local: number[]; remote: number[] }> {
  for (let i = 0; i < warmupRuns; i++) await Promise.all([run(local), run(remote)])
  const samples = { local: [] as number[], remote: [] as number[] }
  for (let i = 0; i < n; i++) {
    checkAborted(signal)
    samples.local.push(await run(local))
    samples.remote.push(await run(remote))
  }
  return samples
}

/** The fleet benchmark. */
export const fleetBenchmark: Benchmark = {
  name: 'fleet',
  title: 'exec through a remote agent over gRPC, and a burst across three agents',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const n = ctx.iterations ?? defaultIterations
    const notes: string[] = []
    const local = await Sandbox.create('debian', { ...ctx.stack.conn })
    ctx.stack.ids.add(local.sandboxId)
    const dir = await mkdtemp(join(tmpdir(), 'sandstorm-bench-fleet-'))
    let server: ServerProcess | undefined
    const agents: ResultPromise[] = []
    const sandboxes: Sandbox[] = []
    try {
      // The production heartbeat (5 s): the tests' fast one would add its own work to every figure.
      server = await startServerProcess({ dataDir: join(dir, 'server'), agentHost: '127.0.0.1', heartbeatMs: 5_000 })
      const conn = { apiUrl: server.url, apiKey: server.apiKey }
      for (let i = 0; i < 3; i++) agents.push(startAgentProcess({ server: server.agentAddress, token: server.token, dataDir: join(dir, `agent-${i}`) }))
      const deadline = Date.now() + 60_000
      while ((await listAgents(conn)).filter((a) => a.state === 'live').length < 3) {
        if (Date.now() > deadline) throw new Error('three agents did not register within 60 s')
        checkAborted(ctx.signal)
        await new Promise((r) => setTimeout(r, 100))
      }
      for (let i = 0; i < 3; i++) sandboxes.push(await Sandbox.create('debian', conn))
      const { local: baseline, remote } = await roundTrips(local, sandboxes[0]!, n, ctx.signal)
      await local.kill().catch(() => undefined)
      ctx.stack.ids.delete(local.sandboxId)

      let failed = 0
      const burstStart = nowMs()
      const latencies = await mapLimit(
        Array.from({ length: burstExecs }, (_, i) => i),
        burstConcurrency,
        async (i) => {
          const start = nowMs()
          const r = await sandboxes[i % 3]!.commands.run(['true']).catch(() => null)
          if (r?.exitCode !== 0) failed++
          return nowMs() - start
        },
        ctx.signal,
      )
      const seconds = (nowMs() - burstStart) / 1000
      notes.push(`burst: ${burstExecs} execs at concurrency ${burstConcurrency} over 3 agents: ${failed} lost or failed, ${(burstExecs / seconds).toFixed(0)} execs/s (${seconds.toFixed(2)} s)`)
      notes.push('server and agents are separate processes on 127.0.0.1, mutual TLS; the baseline is the in-process `up` stack of this run, its samples taken in turn with the remote ones')
      const base = summarize(baseline)
      const subject = summarize(remote)
      notes.push(`p50 difference remote − in-process: ${(subject.p50 - base.p50).toFixed(2)} ms (goal: at most 3 ms)`)
      return {
        name: 'fleet',
        title: this.title,
        figures: [
          { what: "commands.run(['true']) via server → remote agent", unit: 'ms', subject, baseline: { what: "commands.run(['true']) in-process `up`", summary: base }, goal: { stat: 'p50', atMost: Math.round((base.p50 + 3) * 100) / 100 } },
          { what: `one exec of the burst (concurrency ${burstConcurrency}, 3 agents)`, unit: 'ms', subject: summarize(latencies), baseline: null },
        ],
        notes,
      }
    } finally {
      if (ctx.stack.ids.has(local.sandboxId)) await local.kill().catch(() => undefined)
      ctx.stack.ids.delete(local.sandboxId)
      if (server) for (const s of sandboxes) await s.kill().catch(() => undefined)
      for (const a of agents) a.kill('SIGTERM')
      await Promise.allSettled(agents)
      server?.child.kill('SIGTERM')
      await server?.child
      await rm(dir, { recursive: true, force: true })
    }
  },
}
