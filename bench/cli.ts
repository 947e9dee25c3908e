/**
 * cli: whole `sandstorm` processes (the bin users run) beside whole processes of their baselines,
 * interleaved sample by sample: `node -e 0`, `--version`, `ls`, `exec ID -- true` beside
 * `docker exec`, and `run -- true` beside `docker run --rm`, without and with a warm pool.
 */
import { statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { deletePool, Sandbox, setPool, waitForPool } from '@sandstorm/sdk'
import { timeChild } from './bare-runc.js'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import { findDockerCli } from './docker-cli.js'
import type { BenchResult, Figure } from './report.js'
import { summarize } from './stats.js'

const defaultIterations = 30
const warmupRuns = 2
const poolMin = 2

/** dist/bench/cli.js -> dist/src/cli/bin.cjs, the `sandstorm` bin of package.json. */
const bin = fileURLToPath(new URL('../src/cli/bin.cjs', import.meta.url))
const bundle = fileURLToPath(new URL('../src/cli/program.bundle.cjs', import.meta.url))
const program = fileURLToPath(new URL('../src/cli/program.js', import.meta.url))

/** How the bin starts here: from its bundle, or unbundled when the bundle is missing or older than tsc's output. */
function startMode(): string {
  try {
    return statSync(bundle).mtimeMs >= statSync(program).mtimeMs ? 'bundled (program.bundle.cjs)' : 'UNBUNDLED: tsc ran after the last `npm run build:cli`'
  } catch {
    return 'UNBUNDLED: no program.bundle.cjs (run `npm run build`)'
  }
}

/** One process to time, and what a successful sample prints. */
interface Probe {
  file: string
  args: string[]
  /** Fails the sample unless stdout passes (every sample must also exit 0). */
  stdout?: (text: string) => boolean
}

async function sample(what: string, p: Probe): Promise<number> {
  const t = await timeChild(p.file, p.args)
  if (t.exitCode !== 0) throw new Error(`${what} expected exit 0, got ${t.exitCode}: ${t.stderr.trim().split('\n')[0]}`)
  if (p.stdout && !p.stdout(t.stdout)) throw new Error(`${what} printed something unexpected: ${JSON.stringify(t.stdout.slice(0, 200))}`)
  return t.ms
}

/** The probe run through `env -u NODE_EXTRA_CA_CERTS`. */
function withoutCaCerts(p: Probe): Probe {
  return { ...p, file: '/usr/bin/env', args: ['-u', 'NODE_EXTRA_CA_CERTS', p.file, ...p.args] }
}

/** Times probes in rounds, one sample of each per round, so that load on the host hits them alike. */
async function interleaved(ctx: BenchContext, label: string, rounds: number, probes: Record<string, Probe>): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = Object.fromEntries(Object.keys(probes).map((k) => [k, []]))
  for (let i = 0; i < warmupRuns + rounds; i++) {
    checkAborted(ctx.signal)
    for (const [name, probe] of Object.entries(probes)) {
      const ms = await sample(name, probe)
      if (i >= warmupRuns) out[name]!.push(ms)
    }
    if ((i - warmupRuns) % 10 === 9) ctx.progress(`${label} ${i - warmupRuns + 1}/${rounds}`)
  }
  return out
}

/** The cli benchmark. */
export const cliBenchmark: Benchmark = {
  name: 'cli',
  title: 'whole `sandstorm` processes beside `node -e 0` and Docker\'s CLI',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const n = ctx.iterations ?? defaultIterations
    const { stack } = ctx
    const startedAs = startMode()
    const notes: string[] = [`the bin starts ${startedAs}; node ${process.version}`, `${n} samples each after ${warmupRuns} warm-up rounds, interleaved round by round`]
    const caCerts = process.env.NODE_EXTRA_CA_CERTS
    if (caCerts) {
      notes.push(
        `NODE_EXTRA_CA_CERTS is set (${caCerts}): Node 20 reads and parses those certificates, with its own, before it runs any JavaScript, in every node process (\`node -e 0\` and \`sandstorm\` alike; Docker's Go client reads certificates only for TLS). The rows "NODE_EXTRA_CA_CERTS unset" run the same commands through \`env -u NODE_EXTRA_CA_CERTS\` (one exec more), interleaved with the rest; the goal is judged on the rows as the environment is`,
      )
    }
    const sandstorm = (...args: string[]): Probe => ({ file: process.execPath, args: [bin, '--url', stack.conn.apiUrl, '--api-key', stack.conn.apiKey, ...args] })
    const node: Probe = { file: process.execPath, args: ['-e', '0'] }
    const docker = await findDockerCli()
    if ('reason' in docker) notes.push(`no Docker rows: ${docker.reason}`)
    else notes.push(`docker: ${docker.describe}`)
    const dk = 'reason' in docker ? undefined : docker

    let sandbox: Sandbox | undefined
    try {
      sandbox = await Sandbox.create('debian', { ...stack.conn })
      stack.ids.add(sandbox.sandboxId)
      const id = sandbox.sandboxId
      const container = dk ? await dk.startIdle() : undefined

      // Startup, and the one-request commands, beside node itself.
      const execProbe = sandstorm('exec', '--no-stdin', id, '--', 'true')
      const quick = await interleaved(ctx, 'startup and exec', n, {
        node,
        version: { ...sandstorm('--version'), stdout: (s) => /^\d+\.\d+\.\d+\n$/.test(s) },
        ls: sandstorm('ls', '--json'),
        exec: execProbe,
        ...(dk && container ? { dockerExec: { file: dk.binary, args: ['exec', container, 'true'] } } : {}),
        // What the host's NODE_EXTRA_CA_CERTS costs every node process, measured rather than assumed.
        ...(caCerts ? { nodeNoCa: withoutCaCerts(node), execNoCa: withoutCaCerts(execProbe) } : {}),
      })
      const nodeBase = { what: '`node -e 0`', summary: summarize(quick.node!) }
      const execBase = quick.dockerExec ? { what: `\`docker exec C true\` (${dk!.image})`, summary: summarize(quick.dockerExec) } : nodeBase
      const figures: Figure[] = [
        { what: '`sandstorm --version`', unit: 'ms', subject: summarize(quick.version!), baseline: nodeBase },
        { what: '`sandstorm ls --json`', unit: 'ms', subject: summarize(quick.ls!), baseline: nodeBase },
        {
          what: '`sandstorm exec ID -- true`',
          unit: 'ms',
          subject: summarize(quick.exec!),
          baseline: execBase,
          // The goal: no slower than docker exec, or 1.4x node where no engine answers.
          goal: { stat: 'p50', atMost: Math.round(quick.dockerExec ? execBase.summary.p50 : 1.4 * nodeBase.summary.p50) },
        },
      ]
      if (quick.dockerExec) figures.push({ what: '`sandstorm exec ID -- true`', unit: 'ms', subject: summarize(quick.exec!), baseline: nodeBase })
      if (quick.nodeNoCa && quick.execNoCa) {
        figures.push({ what: '`node -e 0`, NODE_EXTRA_CA_CERTS unset', unit: 'ms', subject: summarize(quick.nodeNoCa), baseline: nodeBase })
        figures.push({ what: '`sandstorm exec ID -- true`, NODE_EXTRA_CA_CERTS unset', unit: 'ms', subject: summarize(quick.execNoCa), baseline: execBase })
      }

      // A whole sandbox per sample: create, exec, destroy.
      const runProbe = sandstorm('run', '--no-stdin', '--', 'true')
      const cold = await interleaved(ctx, 'run (no pool)', n, {
        run: runProbe,
        ...(dk ? { dockerRun: { file: dk.binary, args: ['run', '--rm', '--network', 'none', dk.image, 'true'] } } : {}),
      })
      const runBase = cold.dockerRun ? { what: `\`docker run --rm --network none ${dk!.image} true\``, summary: summarize(cold.dockerRun) } : null
      const runGoal = runBase ? { stat: 'p50' as const, atMost: Math.round(0.5 * runBase.summary.p50) } : undefined
      figures.push({ what: '`sandstorm run -- true`, no warm pool', unit: 'ms', subject: summarize(cold.run!), baseline: runBase, ...(runGoal ? { goal: runGoal } : {}) })

      await setPool('debian', { ...stack.conn, min: poolMin, max: poolMin * 2 })
      try {
        await waitForPool('debian', { ...stack.conn, ready: poolMin })
        const pooled: number[] = []
        for (let i = 0; i < warmupRuns + n; i++) {
          checkAborted(ctx.signal)
          // Untimed: each sample measures a hit, not how fast the pool refills.
          await waitForPool('debian', { ...stack.conn, ready: poolMin })
          const ms = await sample('run (pool)', runProbe)
          if (i >= warmupRuns) pooled.push(ms)
        }
        figures.push({ what: '`sandstorm run -- true`, warm pool of debian', unit: 'ms', subject: summarize(pooled), baseline: runBase, ...(runGoal ? { goal: runGoal } : {}) })
        notes.push(`warm pool: min ${poolMin}, every timed run found one ready (refills waited for between samples, untimed; those samples are not interleaved with docker's)`)
      } finally {
        await deletePool('debian', stack.conn)
      }
      if (!dk) notes.push('`sandstorm run` has no baseline (no Docker engine); its goal is 0.5x `docker run --rm`')
      // A tsc run during the samples (another build in the same checkout) leaves the bundle stale: say so.
      const endedAs = startMode()
      if (endedAs !== startedAs) notes.push(`the bin's start changed during the run: it now starts ${endedAs}`)
      return { name: 'cli', title: this.title, figures, notes }
    } finally {
      if (sandbox) {
        await sandbox.kill().catch(() => undefined)
        stack.ids.delete(sandbox.sandboxId)
      }
      if (dk) ctx.leftovers(await dk.close())
    }
  },
}
