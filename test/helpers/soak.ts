/**
 * The fault soak, for test/soak.test.ts and bench/soak.ts: a server and three agents as separate
 * processes, each agent in a network namespace of its own; execs at a fixed concurrency across
 * their sandboxes while one agent and then the server are SIGKILLed and restarted.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { execa, type ResultPromise } from 'execa'
import { listAgents, Sandbox, SandstormSdkError } from '@sandstorm/sdk'
import { startAgentProcess, startServerProcess, type ServerProcess } from './fleet-processes.js'
import { createTestNetwork, type TestNetwork } from './netns.js'
import { until } from './until.js'

/** A running fleet that can lose its members. */
export interface SoakFleet {
  dir: string
  net: TestNetwork
  server: ServerProcess
  agents: ResultPromise[]
  agentDir(i: number): string
  conn(): { apiUrl: string; apiKey: string }
  /** SIGKILLs agent `i`, waits for it to die, and starts it again on the same data dir. */
  killAgent(i: number): Promise<void>
  /** SIGKILLs the server and starts it again on the same data dir and ports. */
  killServer(): Promise<void>
  /** Resolves once `n` agents are live and have sent metrics. */
  live(n: number, timeoutMs?: number): Promise<void>
  /** Stops every process (SIGTERM), removes the namespaces and, unless told to keep it, the directory. */
  stop(keepDir?: boolean): Promise<void>
}

/** Starts a server and `agents` agents, each agent in its own namespace, and waits until all are live. */
export async function startSoakFleet(agents = 3, heartbeatMs = 500): Promise<SoakFleet> {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-soak-'))
  const net = await createTestNetwork(agents)
  const agentDir = (i: number): string => join(dir, `agent-${i}`)
  const startServer = (ports?: { agentPort: number; port: number }): Promise<ServerProcess> =>
    startServerProcess({ dataDir: join(dir, 'server'), agentHost: net.hostAddress, heartbeatMs, lostAfterMs: 10_000, ...ports })
  const fleet: SoakFleet = {
    dir,
    net,
    server: await startServer().catch(async (err: unknown) => {
      await net.remove()
      throw err
    }),
    agents: [],
    agentDir,
    conn: () => ({ apiUrl: fleet.server.url, apiKey: fleet.server.apiKey }),
    async killAgent(i) {
      fleet.agents[i]!.kill('SIGKILL')
      await fleet.agents[i]
      // The agent kept its certificate: no token the second time.
      fleet.agents[i] = startAgentProcess({ netns: net.namespaces[i]!, server: fleet.server.agentAddress, dataDir: agentDir(i) })
    },
    async killServer() {
      const agentPort = Number(/:(\d+)$/.exec(fleet.server.agentAddress)![1])
      const port = Number(new URL(fleet.server.url).port)
      fleet.server.child.kill('SIGKILL')
      await fleet.server.child
      fleet.server = await startServer({ agentPort, port })
    },
    async live(n, timeoutMs = 60_000) {
      await until(`${n} live agents`, async () => (await listAgents(fleet.conn())).filter((a) => a.state === 'live' && a.metrics).length === n, timeoutMs)
    },
    async stop(keepDir = false) {
      for (const a of fleet.agents) a.kill('SIGTERM')
      await Promise.allSettled(fleet.agents)
      fleet.server.child.kill('SIGTERM')
      await fleet.server.child
      await net.remove()
      if (!keepDir) await rm(dir, { recursive: true, force: true })
    },
  }
  try {
    for (let i = 0; i < agents; i++) fleet.agents.push(startAgentProcess({ netns: net.namespaces[i]!, server: fleet.server.agentAddress, token: fleet.server.token, dataDir: agentDir(i) }))
    await fleet.live(agents)
  } catch (err) {
    await fleet.stop()
    throw err
  }
  return fleet
}

/** How a run of execs ended. */
export interface SoakOutcome {
  ok: number
  /** Typed, retryable failures by error class and code. */
  retryable: Record<string, number>
  /** Anything else: a wrong answer, an untyped or non-retryable error. Must stay empty. */
  wrong: string[]
  /** Milliseconds of each exec that succeeded. */
  latencies: number[]
  seconds: number
}

/**
 * Runs `total` execs (`echo N`), `concurrency` at a time, round robin over `sandboxes`; calls
 * `onDone` with the count done after each. A worker whose exec failed with a retryable error
 * waits `backoffMs` before its next one, as a client that retries would.
 */
export async function runExecs(sandboxes: Sandbox[], total: number, concurrency: number, onDone: (done: number) => void = () => undefined, backoffMs = 200): Promise<SoakOutcome> {
  const outcome: SoakOutcome = { ok: 0, retryable: {}, wrong: [], latencies: [], seconds: 0 }
  let next = 0
  let done = 0
  const started = performance.now()
  const worker = async (): Promise<void> => {
    while (next < total) {
      const i = next++
      const sandbox = sandboxes[i % sandboxes.length]!
      const start = performance.now()
      try {
        const r = await sandbox.commands.run(['echo', String(i)], { timeoutMs: 60_000 })
        if (r.stdout === `${i}\n`) {
          outcome.ok++
          outcome.latencies.push(performance.now() - start)
        } else outcome.wrong.push(`exec ${i} on ${sandbox.sandboxId} (pid ${r.pid}, after ${Math.round(performance.now() - start)} ms): stdout ${JSON.stringify(r.stdout)}, stderr ${JSON.stringify(r.stderr)}, exit ${r.exitCode}`)
      } catch (err) {
        if (err instanceof SandstormSdkError && err.retryable) {
          const key = `${err.name} (${err.code})`
          outcome.retryable[key] = (outcome.retryable[key] ?? 0) + 1
          await delay(backoffMs)
        } else {
          const what = err instanceof SandstormSdkError ? `${err.name} (${err.code})` : err instanceof Error ? err.name : typeof err
          outcome.wrong.push(`exec ${i} on ${sandbox.sandboxId}: ${what}: ${err instanceof Error ? err.message : String(err)}`)
        }
      }
      onDone(++done)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  outcome.seconds = (performance.now() - started) / 1000
  return outcome
}

/**
 * The faults of the soak, fired as the execs pass a share of `total`: at 20 % agent 0 is SIGKILLed
 * and restarted, and once it is back, at 50 % the server. Returns the progress callback for
 * `runExecs` and a promise of the faults' end (it rejects if a member does not come back).
 */
export function faultPlan(fleet: SoakFleet, total: number, agents: number): { onDone: (done: number) => void; finished: Promise<void> } {
  let progress = 0
  const waiters: Array<{ at: number; resolve: () => void }> = []
  const reach = (share: number): Promise<void> =>
    new Promise((resolve) => {
      if (progress >= total * share) resolve()
      else waiters.push({ at: total * share, resolve })
    })
  const finished = (async () => {
    await reach(0.2)
    await fleet.killAgent(0)
    await fleet.live(agents)
    await reach(0.5)
    await fleet.killServer()
    await fleet.live(agents)
  })()
  const onDone = (done: number): void => {
    progress = done
    for (const w of waiters.filter((w) => done >= w.at)) {
      waiters.splice(waiters.indexOf(w), 1)
      w.resolve()
    }
  }
  return { onDone, finished }
}

/** Ids of the runc containers in an agent's data dir, as runc itself lists them. */
export async function containersOf(agentDir: string): Promise<string[]> {
  const r = await execa('runc', ['--root', join(agentDir, 'runc'), 'list', '-q'], { reject: false })
  return r.stdout.split('\n').filter(Boolean).sort()
}
