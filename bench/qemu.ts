/**
 * qemu: microVM sandboxes at the backend level, with the accelerator in the title. Cold boot to a
 * ready VM is the baseline; against it, a golden clone to ready (and to its guest agent answering),
 * the first exec in a fresh clone, and the host memory of 20 idle clones of one 512 MiB golden
 * (PSS summed, so pages the clones share count once) against 20 × 512 MiB.
 */
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { createQemuBackend } from '../src/runtime/index.js'
import type { SandboxSpec } from '../src/runtime/index.js'
import { pino } from 'pino'
import { newId, type Logger } from '../src/shared/index.js'
import { createTemplateStore } from '../src/templates/index.js'
import { templatesDir } from './bench-stack.js'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import type { BenchResult } from './report.js'
import { summarize, timed } from './stats.js'

const coldBoots = 3
const defaultClones = 20
const goldenMiB = 512
const qemuDir = join(process.env.SANDSTORM_DATA_DIR ?? '/var/lib/sandstorm', 'qemu')

/** A logger that hands the backend's clone phases to the benchmark (the agent-answering time is one of them). */
function phaseLogger(onClone: (phasesMs: Record<string, number>) => void): Logger {
  return pino({ level: 'info' }, {
    write(line: string) {
      const entry = JSON.parse(line) as { msg?: string; phasesMs?: Record<string, number> }
      if (entry.msg === 'VM sandbox cloned' && entry.phasesMs) onClone(entry.phasesMs)
    },
  })
}

async function pssBytes(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8')
  return Number(/^Pss:\s+(\d+) kB/m.exec(text)?.[1] ?? 0) * 1024
}

/** The qemu benchmark. */
export const qemuBenchmark: Benchmark = {
  name: 'qemu',
  title: 'microVMs: cold boot, golden clones, memory of idle clones',
  async run(ctx: BenchContext): Promise<BenchResult> {
    if (!existsSync('/usr/bin/qemu-system-x86_64')) throw new Error('qemu-system-x86 is not installed: run scripts/setup.sh')
    const clones = ctx.iterations ?? defaultClones
    const notes: string[] = []
    const agentReady: number[] = []
    const backend = createQemuBackend({ dir: qemuDir, logger: phaseLogger((p) => agentReady.push((p.disk ?? 0) + (p.qemu ?? 0) + (p.state ?? 0) + (p.agent ?? 0))) })
    const template = await createTemplateStore({ dir: templatesDir }).resolve('debian')
    const spec = (id: string, memoryMiB: number): SandboxSpec => ({ id, rootfs: template.rootfs, memoryMiB, cpus: 1, pidsMax: 1024, env: {}, hostname: id.replace('-', ''), network: 'none' })
    const live = new Set<string>()
    // Machines on tmpfs: clones map its pages straight from the page cache.
    const machineParent = await mkdtemp('/dev/shm/sandstorm-bench-machine-')
    const cold: number[] = []
    const clone: number[] = []
    const firstExec: number[] = []
    let totalPss = 0
    let saveMs = 0
    try {
      for (let i = 0; i < coldBoots; i++) {
        checkAborted(ctx.signal)
        const id = newId('sb')
        live.add(id)
        cold.push((await timed(() => backend.create(spec(id, goldenMiB)))).ms)
        await backend.destroy(id)
        live.delete(id)
        ctx.progress(`qemu: cold boot ${i + 1}/${coldBoots}`)
      }
      const golden = newId('sb')
      live.add(golden)
      await backend.create(spec(golden, goldenMiB))
      const saved = await timed(() => backend.saveMachine(golden, join(machineParent, 'golden')))
      saveMs = saved.ms
      const machine = saved.value
      // The golden's own RAM file is not the clones': it goes, and only the saved machine remains.
      await backend.destroy(golden)
      live.delete(golden)
      const pids: number[] = []
      for (let i = 0; i < clones; i++) {
        checkAborted(ctx.signal)
        const id = newId('sb')
        live.add(id)
        const { ms, value } = await timed(() => backend.create({ ...spec(id, goldenMiB), machine }))
        clone.push(ms)
        pids.push(value.pid!)
        const proc = await timed(async () => (await backend.exec(id, { argv: ['/bin/true'], env: {}, cwd: '/', uid: 0, gid: 0 }, { onStdout: () => undefined, onStderr: () => undefined })).result)
        firstExec.push(proc.ms)
        if ((i + 1) % 5 === 0) ctx.progress(`qemu: clone ${i + 1}/${clones}`)
      }
      for (const pid of pids) totalPss += await pssBytes(pid)
    } finally {
      for (const id of live) await backend.destroy(id).catch((err: unknown) => ctx.leftovers([`qemu VM ${id}: ${err instanceof Error ? err.message : String(err)}`]))
      await rm(machineParent, { recursive: true, force: true })
    }
    notes.push(`accelerator: ${backend.accel}; guest RAM ${goldenMiB} MiB, 1 vCPU; saveMachine of the golden took ${saveMs.toFixed(0)} ms (machine dir on /dev/shm)`)
    notes.push('clone to ready: backend.create resolves (QEMU started, device state loaded, guest agent answering, clock, hostname and CRNG reseed done)')
    notes.push('clone to agent answering: the same create up to the guest agent\'s first guest-sync answer, from the backend\'s own phase timings')
    notes.push(`memory: PSS of the ${clones} clone QEMU processes summed (/proc/PID/smaps_rollup), taken after each had run one command; the goal is 25% of ${clones} × ${goldenMiB} MiB`)
    const toMiB = (b: number) => b / 2 ** 20
    const coldBaseline = { what: `cold boot to ready (backend.create, ${goldenMiB} MiB)`, summary: summarize(cold) }
    return {
      name: 'qemu',
      title: `${this.title} (${backend.accel})`,
      figures: [
        { what: 'golden clone to ready', unit: 'ms', subject: summarize(clone), baseline: coldBaseline },
        { what: 'golden clone to agent answering', unit: 'ms', subject: summarize(agentReady.length ? agentReady : [Number.NaN]), baseline: coldBaseline, goal: { stat: 'p95', atMost: 100 } },
        { what: 'first exec in a fresh clone (/bin/true)', unit: 'ms', subject: summarize(firstExec), baseline: null },
        {
          what: `host memory of ${clones} idle clones (PSS summed)`,
          unit: 'MiB',
          subject: summarize([toMiB(totalPss)]),
          baseline: { what: `${clones} × ${goldenMiB} MiB guest RAM`, summary: summarize([clones * goldenMiB]) },
          goal: { stat: 'p50', atMost: 0.25 * clones * goldenMiB },
        },
      ],
      notes,
    }
  },
}
