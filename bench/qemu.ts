/**
 * qemu: microVM sandboxes at the backend level, with the accelerator in the title. Cold boot to a
 * ready VM is the baseline; against it, a golden clone to ready (and to its guest agent answering),
 * the first exec in a fresh clone, and the host memory of 20 idle clones of one 512 MiB golden
 * (PSS summed, so pages the clones share count once) against 20 × 512 MiB.
 */
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { loadavg } from 'node:os'
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

const coldBoots = 2
const defaultClones = 20
const goldenMiB = 512
const qemuDir = join(process.env.SANDSTORM_DATA_DIR ?? '/var/lib/sandstorm', 'qemu')

/** A logger that hands the backend's clone phases to the benchmark (the agent-answering time is one of them). */
function phaseLogger(onClone: (phasesMs: Record<string, number>, spare: boolean) => void): Logger {
  return pino({ level: 'info' }, {
    write(line: string) {
      const entry = JSON.parse(line) as { msg?: string; phasesMs?: Record<string, number>; spare?: boolean }
      if (entry.msg === 'VM sandbox cloned' && entry.phasesMs) onClone(entry.phasesMs, entry.spare === true)
    },
  })
}

/** A clone's time until its guest agent answered: every phase before its identity step. */
const untilAgent = (p: Record<string, number>) => (p.disk ?? 0) + (p.qemu ?? 0) + (p.spare ?? 0) + (p.state ?? 0) + (p.agent ?? 0)

/** PSS of this process's spare QEMUs (one expected), summed. */
async function spareMemory(dir: string): Promise<number> {
  const parent = join(dir, 'spares', String(process.pid))
  let total = 0
  for (const id of await readdir(parent).catch(() => [] as string[])) {
    const pid = Number(await readFile(join(parent, id, 'qemu.pid'), 'utf8').catch(() => '0'))
    if (pid) total += await pssBytes(pid).catch(() => 0)
  }
  return total
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
    const agentReadySpare: number[] = []
    const logger = phaseLogger((p, spare) => (spare ? agentReadySpare : agentReady).push(untilAgent(p)))
    // Two backends on one directory: clones that start their own QEMU, and clones that take a spare.
    const backend = createQemuBackend({ dir: qemuDir, logger, sparesPerMachine: 0 })
    const spared = createQemuBackend({ dir: qemuDir, logger, sparesPerMachine: 1 })
    const template = await createTemplateStore({ dir: templatesDir }).resolve('debian')
    const spec = (id: string, memoryMiB: number): SandboxSpec => ({ id, rootfs: template.rootfs, memoryMiB, cpus: 1, pidsMax: 1024, env: {}, hostname: id.replace('-', ''), network: { mode: 'none' } })
    const live = new Set<string>()
    // Machines on tmpfs: clones map its pages straight from the page cache.
    const machineParent = await mkdtemp('/dev/shm/sandstorm-bench-machine-')
    const cold: number[] = []
    const clone: number[] = []
    const cloneSpare: number[] = []
    const firstExec: number[] = []
    let sparePssBytes = 0
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
      // Idle TCG guests still take CPU (timer ticks): the clones go before the next phase is timed.
      await Promise.all([...live].map((id) => backend.destroy(id).then(() => live.delete(id))))
      // Clones that take a QEMU started ahead: each waits for the spare before it is timed (the steady
      // state when clones come slower than a spare starts), and the clone is destroyed after its exec.
      for (let i = 0; i < clones; i++) {
        checkAborted(ctx.signal)
        await spared.prestart(machine)
        if (i === 0) sparePssBytes = await spareMemory(qemuDir)
        const id = newId('sb')
        live.add(id)
        cloneSpare.push((await timed(() => spared.create({ ...spec(id, goldenMiB), machine }))).ms)
        await spared.destroy(id)
        live.delete(id)
        if ((i + 1) % 5 === 0) ctx.progress(`qemu: clone from a spare ${i + 1}/${clones}`)
      }
    } finally {
      for (const id of live) await backend.destroy(id).catch((err: unknown) => ctx.leftovers([`qemu VM ${id}: ${err instanceof Error ? err.message : String(err)}`]))
      await spared.close()
      await backend.close()
      await rm(machineParent, { recursive: true, force: true })
    }
    notes.push(`accelerator: ${backend.accel}; guest RAM ${goldenMiB} MiB, 1 vCPU; saveMachine of the golden took ${saveMs.toFixed(0)} ms (machine dir on /dev/shm)`)
    notes.push('clone to ready: backend.create resolves (QEMU started, device state loaded, guest agent answering, clock, hostname and CRNG reseed done)')
    notes.push('clone to agent answering: the same create up to the guest agent\'s first guest-sync answer, from the backend\'s own phase timings')
    notes.push('from a spare: the clone takes a QEMU started ahead (paused, memory mapped, disk and cgroup ready, device state loaded); the spare is waited for before each timed create')
    notes.push(`a waiting spare QEMU: ${(sparePssBytes / 2 ** 20).toFixed(1)} MiB PSS (no guest RAM touched yet)`)
    notes.push(`load average at the end: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
    notes.push(`memory: PSS of the ${clones} clone QEMU processes summed (/proc/PID/smaps_rollup), taken after each had run one command; the goal is 25% of ${clones} × ${goldenMiB} MiB`)
    const toMiB = (b: number) => b / 2 ** 20
    const coldBaseline = { what: `cold boot to ready (backend.create, ${goldenMiB} MiB)`, summary: summarize(cold) }
    return {
      name: 'qemu',
      title: `${this.title} (${backend.accel})`,
      figures: [
        { what: 'golden clone to ready', unit: 'ms', subject: summarize(clone), baseline: coldBaseline },
        { what: 'golden clone to agent answering, QEMU started per clone', unit: 'ms', subject: summarize(agentReady.length ? agentReady : [Number.NaN]), baseline: coldBaseline, goal: { stat: 'p95', atMost: 100 } },
        { what: 'golden clone to ready, from a spare QEMU', unit: 'ms', subject: summarize(cloneSpare.length ? cloneSpare : [Number.NaN]), baseline: coldBaseline },
        { what: 'golden clone to agent answering, from a spare QEMU', unit: 'ms', subject: summarize(agentReadySpare.length ? agentReadySpare : [Number.NaN]), baseline: coldBaseline, goal: { stat: 'p95', atMost: 100 } },
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
