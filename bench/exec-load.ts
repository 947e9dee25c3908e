/**
 * Exec load from a process of its own, as a user's client runs: `runLoad` forks this file, which
 * runs loops of `commands.run(['true'])` through the SDK and sends back each exec's latency, the
 * wall time and its own CPU time. The server then has its process to itself, as it would.
 */
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { Sandbox } from '@sandstorm/sdk'

/** One run of loops: `streams` loops of `each` execs at once, loop i on `sandboxIds[i % length]`. */
export interface LoadJob {
  conn: { apiUrl: string; apiKey: string }
  sandboxIds: string[]
  streams: number
  each: number
}

/** What a run measured. */
export interface LoadResult {
  execs: number
  wallMs: number
  latencies: number[]
  /** CPU time of the client process over the run (user + system). */
  clientCpuMs: number
}

/** Runs the job in a new process and resolves with what it measured; rejects with its error. */
export async function runLoad(job: LoadJob): Promise<LoadResult> {
  const child = fork(fileURLToPath(import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const exited = once(child, 'exit')
  child.send(job)
  const [message] = (await Promise.race([once(child, 'message'), exited.then(([code]) => [{ error: `the load process exited (${code}) without a result` }])])) as [LoadResult | { error: string }]
  await exited
  if ('error' in message) throw new Error(message.error)
  return message
}

async function run(job: LoadJob): Promise<LoadResult> {
  const sandboxes = job.sandboxIds.map((id) => Sandbox.fromId(id, job.conn))
  const latencies: number[] = []
  const cpu = process.cpuUsage()
  const start = performance.now()
  await Promise.all(
    Array.from({ length: job.streams }, async (_, i) => {
      const sandbox = sandboxes[i % sandboxes.length]!
      for (let k = 0; k < job.each; k++) {
        const t = performance.now()
        const r = await sandbox.commands.run(['true'])
        latencies.push(performance.now() - t)
        // A fast failure is not a fast exec.
        if (r.exitCode !== 0) throw new Error(`true in ${sandbox.sandboxId} expected exit 0, got ${r.exitCode}`)
      }
    }),
  )
  const wallMs = performance.now() - start
  const used = process.cpuUsage(cpu)
  return { execs: job.streams * job.each, wallMs, latencies, clientCpuMs: (used.user + used.system) / 1000 }
}

// Forked by runLoad: one job in, one result (or error) out.
if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) {
  process.once('message', (job: LoadJob) => {
    run(job).then(
      (result) => process.send!(result, () => process.exit(0)),
      (err: unknown) => process.send!({ error: err instanceof Error ? err.message : String(err) }, () => process.exit(1)),
    )
  })
}
