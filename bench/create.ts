/** create: `Sandbox.create('debian')` until it resolves (the sandbox runs and takes exec), no pool. */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { Sandbox } from '@sandstorm/sdk'
import { newId } from '../src/shared/index.js'
import { createBareRunc } from './bare-runc.js'
import { startBenchStack, type BenchStack } from './bench-stack.js'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import { findDockerBaseline } from './docker-baseline.js'
import type { BenchResult } from './report.js'
import { summarize, timed } from './stats.js'

const defaultIterations = 40
const warmupRuns = 2
/** The pause before each sample, in which the last one's background work ends. */
const settleMs = 150
/** The steady stream's pause between one create's end (its sandbox removed) and the next. */
const steadyGapMs = 100
const steadyRuns = 30

/** A way to start one container of the baseline: times the start, removes it untimed. */
interface CreateBaseline {
  what: string
  /** Starts one, removes it after the clock stopped, and resolves with the start's milliseconds; the start's longest event-loop stall goes to `stalls`. */
  once(i: number, stalls?: number[]): Promise<number>
  close(): Promise<string[]>
}

/**
 * The longest time this process's event loop was held up (a 1 ms timer fired that much late)
 * while `work` ran: what every other request of an agent waits while it starts a sandbox.
 */
const loopDelay = monitorEventLoopDelay({ resolution: 1 })
async function longestStall<T>(work: () => Promise<T>, stalls: number[] = []): Promise<T> {
  loopDelay.enable()
  loopDelay.reset()
  try {
    return await work()
  } finally {
    stalls.push(loopDelay.max / 1e6)
    loopDelay.disable()
  }
}

async function pickBaseline(notes: string[]): Promise<CreateBaseline> {
  const docker = await findDockerBaseline()
  if ('image' in docker) {
    notes.push(`baseline: Docker (docker info answered), image ${docker.image}`)
    return {
      what: `docker run --rm -d ${docker.image} sleep 1000`,
      async once(_i, stalls) {
        const { ms, id } = await longestStall(() => docker.run(), stalls)
        await docker.remove(id)
        return ms
      },
      close: async () => (await docker.close(), []),
    }
  }
  notes.push(`baseline: bare runc (${docker.reason}): a static busybox bundle, runc spec defaults, no seccomp`)
  const bare = await createBareRunc()
  return {
    what: 'runc run --detach (busybox bundle)',
    async once(i, stalls) {
      const id = `bench-create-${i}`
      const ms = await longestStall(() => bare.run(id), stalls)
      await bare.remove(id)
      return ms
    },
    close: () => bare.close(),
  }
}

/** The create benchmark. */
export const createBenchmark: Benchmark = {
  name: 'create',
  title: 'create-to-ready without a pool',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const n = ctx.iterations ?? defaultIterations
    const notes: string[] = []
    const baseline = await pickBaseline(notes)
    const subject: number[] = []
    const base: number[] = []
    /** Baseline samples taken beside the layer rows. */
    const layerBase: number[] = []
    const agentOnly: number[] = []
    const agentNoSpares: number[] = []
    const agentStalls: number[] = []
    const baseStalls: number[] = []
    const agentSteady: number[] = []
    const baseSteady: number[] = []
    const killFailures: string[] = []
    // A second agent that makes each quota disk on the spot (mkfs and a loop mount), as before spare
    // disks; started only for the layer rows, so that its background work (a destroyed disk's loop
    // device, its network's spare slots) never falls into the main row's samples.
    let noSpares: BenchStack | undefined
    // The same create without the SDK, HTTP and catalog: what is left is the agent and runc.
    const agentCreateOne = async (stack: BenchStack = ctx.stack, stalls: number[] = []): Promise<number> => {
      const id = newId('sb')
      stack.ids.add(id)
      const create = () => stack.agent.create({ id, template: 'debian', memoryMiB: 512, cpus: 1, pidsMax: 1024, diskMiB: 2048, env: {}, network: { mode: 'none' } })
      const { ms } = await timed(() => longestStall(create, stalls))
      await stack.agent.destroy(id).catch((err: unknown) => killFailures.push(`${id}: ${err instanceof Error ? err.message : String(err)}`))
      return ms
    }
    const createOne = async (): Promise<number> => {
      const { ms, value: sandbox } = await timed(() => Sandbox.create('debian', { ...ctx.stack.conn }))
      ctx.stack.ids.add(sandbox.sandboxId)
      // A failed kill is not a failed create: it is noted, and the runner's final cleanup tries again.
      await sandbox.kill().catch((err: unknown) => killFailures.push(`${sandbox.sandboxId}: ${err instanceof Error ? err.message : String(err)}`))
      return ms
    }
    try {
      for (let i = 0; i < warmupRuns; i++) {
        await createOne()
        await agentCreateOne()
        await baseline.once(-1 - i)
      }
      // Interleaved, so that drift on the machine weighs on both sides alike; each after a pause in
      // which the last one's background work (a spare disk's refill, a deleted image) ends.
      const settled = async <T>(sample: () => Promise<T>): Promise<T> => {
        await new Promise((r) => setTimeout(r, settleMs))
        return sample()
      }
      // The main row and its baseline, then the layers: the agent alone, with spare disks and
      // without (its own agent), each round beside one more baseline sample.
      for (let i = 0; i < n; i++) {
        checkAborted(ctx.signal)
        subject.push(await settled(createOne))
        base.push(await settled(() => baseline.once(i, baseStalls)))
        if ((i + 1) % 10 === 0) ctx.progress(`create: ${i + 1}/${n}`)
      }
      noSpares = await startBenchStack({ spareDisks: 0 })
      for (let i = 0; i < warmupRuns; i++) await agentCreateOne(noSpares)
      for (let i = 0; i < n; i++) {
        checkAborted(ctx.signal)
        agentOnly.push(await settled(() => agentCreateOne(ctx.stack, agentStalls)))
        agentNoSpares.push(await settled(() => agentCreateOne(noSpares)))
        layerBase.push(await settled(() => baseline.once(n + steadyRuns + i)))
        if ((i + 1) % 10 === 0) ctx.progress(`create layers: ${i + 1}/${n}`)
      }
      // A steady stream: a create every `steadyGapMs`, never a pause long enough for background
      // work (the spare disks' refill) to wait for quiet; the baseline at the same pace.
      for (let i = 0; i < steadyRuns; i++) {
        checkAborted(ctx.signal)
        await new Promise((r) => setTimeout(r, steadyGapMs))
        agentSteady.push(await agentCreateOne())
      }
      for (let i = 0; i < steadyRuns; i++) {
        checkAborted(ctx.signal)
        await new Promise((r) => setTimeout(r, steadyGapMs))
        baseSteady.push(await baseline.once(n + i))
      }
    } finally {
      ctx.leftovers(await baseline.close())
      if (noSpares) ctx.leftovers(await noSpares.close())
    }
    notes.push(`${warmupRuns} warm-up runs of each side not counted; each sandbox is killed after the clock stopped; each sample starts ${settleMs} ms after the last one ended`)
    if (killFailures.length > 0) notes.push(`${killFailures.length} kills failed, e.g. ${killFailures[0]}`)
    const baseSummary = { what: baseline.what, summary: summarize(base) }
    return {
      name: 'create',
      title: this.title,
      figures: [
        {
          what: "Sandbox.create('debian') until it resolves",
          unit: 'ms',
          subject: summarize(subject),
          baseline: baseSummary,
          goal: { stat: 'p95', atMost: 60 },
        },
        {
          what: 'layer: agent.create in-process (no SDK, HTTP, catalog)',
          unit: 'ms',
          subject: summarize(agentOnly),
          baseline: { what: `${baseline.what}, sampled beside these`, summary: summarize(layerBase) },
        },
        {
          what: 'layer: agent.create with a spare disk (2 GiB quota) moved in',
          unit: 'ms',
          subject: summarize(agentOnly),
          baseline: { what: 'the same with spare disks off: mkfs and a loop mount per create', summary: summarize(agentNoSpares) },
        },
        {
          what: `layer: agent.create in a steady stream (${steadyGapMs} ms between one's removal and the next)`,
          unit: 'ms',
          subject: summarize(agentSteady),
          baseline: { what: `${baseline.what} at the same pace`, summary: summarize(baseSteady) },
        },
        {
          what: 'longest event-loop stall during an agent.create (runc started by the launcher)',
          unit: 'ms',
          subject: summarize(agentStalls),
          baseline: { what: `the same during one baseline start (${baseline.what}, spawned from this process)`, summary: summarize(baseStalls) },
        },
      ],
      notes,
    }
  },
}
