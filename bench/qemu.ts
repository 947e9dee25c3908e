/**
 * qemu: microVM sandboxes at the backend level, with the accelerator in the title. Cold boot to a
 * ready VM is the baseline; against it, a golden clone to ready (and to its guest agent answering),
 * with a QEMU started per clone and from a spare QEMU; the first exec in a fresh clone beside a
 * later exec in the same clone; and the host memory of 20 idle clones of one 512 MiB golden (PSS
 * summed, so pages the clones share count once) against 20 × 512 MiB.
 */
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createQemuBackend } from '../src/runtime/index.js'
import type { RuntimeBackend, SandboxSpec } from '../src/runtime/index.js'
import { pino } from 'pino'
import { newId, type Logger } from '../src/shared/index.js'
import { createTemplateStore } from '../src/templates/index.js'
import { templatesDir } from './bench-stack.js'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import type { BenchResult } from './report.js'
import { summarize, timed } from './stats.js'

const coldBoots = 2
const idleSeconds = 5
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
const untilAgent = (p: Record<string, number>) => (p.checks ?? 0) + (p.disk ?? 0) + (p.qemu ?? 0) + (p.spare ?? 0) + (p.state ?? 0) + (p.agent ?? 0)

const silent = { onStdout: () => undefined, onStderr: () => undefined }

/** One `/bin/true` in the sandbox as root, until its result: what a user's exec costs at the backend. */
async function execTrue(backend: RuntimeBackend, id: string): Promise<number> {
  return (await timed(async () => (await backend.exec(id, { argv: ['/bin/true'], env: {}, cwd: '/', uid: 0, gid: 0 }, silent)).result)).ms
}

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

/** CPU time a process has used so far, in ms (utime + stime of /proc/PID/stat, at Linux's 100 ticks a second). */
async function cpuMs(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10
}

/** Host CPU per second of wall time, one sample a second, of each process at once. */
async function idleCpu(pids: number[], seconds: number): Promise<number[][]> {
  const out: number[][] = pids.map(() => [])
  let last = await Promise.all(pids.map(cpuMs))
  for (let s = 0; s < seconds; s++) {
    const started = performance.now()
    await sleep(1000)
    const now = await Promise.all(pids.map(cpuMs))
    const wallS = (performance.now() - started) / 1000
    now.forEach((v, i) => out[i]!.push((v - last[i]!) / wallS))
    last = now
  }
  return out
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
    const identitySpare: number[] = []
    // Only the timed clones' phases: the idle clones measured last are left out.
    let timing = true
    const logger = phaseLogger((p, spare) => timing && (spare ? identitySpare.push(p.identity ?? Number.NaN) : agentReady.push(untilAgent(p))))
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
    const laterExec: number[] = []
    const firstExecSpare: number[] = []
    const laterExecSpare: number[] = []
    let sparePssBytes = 0
    let idleCpuPerClone: number[] = []
    let idleCpuSpare: number[] = []
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
        firstExec.push(await execTrue(backend, id))
        laterExec.push(await execTrue(backend, id))
        if ((i + 1) % 5 === 0) ctx.progress(`qemu: clone ${i + 1}/${clones}`)
      }
      for (const pid of pids) totalPss += await pssBytes(pid)
      // Idle TCG guests still take CPU (timer ticks): the clones go before the next phase is timed.
      await Promise.all([...live].map((id) => backend.destroy(id).then(() => live.delete(id))))
      // Clones that take a QEMU started ahead: each waits for the spare before it is timed (the steady
      // state when clones come slower than a spare starts). The spare the create starts in its place
      // is waited for too before the execs are timed, so that neither the first exec nor the later
      // one meets it; then the clone is destroyed.
      for (let i = 0; i < clones; i++) {
        checkAborted(ctx.signal)
        await spared.prestart(machine)
        if (i === 0) sparePssBytes = await spareMemory(qemuDir)
        const id = newId('sb')
        live.add(id)
        cloneSpare.push((await timed(() => spared.create({ ...spec(id, goldenMiB), machine }))).ms)
        await spared.prestart(machine)
        firstExecSpare.push(await execTrue(spared, id))
        laterExecSpare.push(await execTrue(spared, id))
        await spared.destroy(id)
        live.delete(id)
        if ((i + 1) % 5 === 0) ctx.progress(`qemu: clone from a spare ${i + 1}/${clones}`)
      }
      // One idle clone of each kind side by side: the host CPU its QEMU takes while its guest does
      // nothing (a clone without a network from a spare once spun on its deleted tap).
      checkAborted(ctx.signal)
      await spared.prestart(machine)
      timing = false
      const idle: { b: RuntimeBackend; id: string; pid: number }[] = []
      for (const b of [backend, spared]) {
        const id = newId('sb')
        live.add(id)
        idle.push({ b, id, pid: (await b.create({ ...spec(id, goldenMiB), machine })).pid! })
      }
      // The spare that create started is not measured; the clones settle for a second first.
      await spared.prestart(machine)
      await sleep(1000)
      ;[idleCpuPerClone, idleCpuSpare] = await idleCpu(idle.map((v) => v.pid), idleSeconds)
      for (const v of idle) await v.b.destroy(v.id).then(() => live.delete(v.id))
      ctx.progress('qemu: idle clones measured')
    } finally {
      for (const id of live) await backend.destroy(id).catch((err: unknown) => ctx.leftovers([`qemu VM ${id}: ${err instanceof Error ? err.message : String(err)}`]))
      await spared.close()
      await backend.close()
      await rm(machineParent, { recursive: true, force: true })
    }
    notes.push(`accelerator: ${backend.accel}; guest RAM ${goldenMiB} MiB, 1 vCPU; saveMachine of the golden took ${saveMs.toFixed(0)} ms (machine dir on /dev/shm)`)
    notes.push('clone to ready: backend.create resolves (QEMU started, device state loaded, guest agent answering, clock, hostname and CRNG reseed done)')
    notes.push('clone to agent answering: the same create up to the guest agent\'s first guest-sync answer, from the backend\'s own phase timings')
    notes.push('from a spare: the clone takes a QEMU started ahead (memory mapped, disk and cgroup ready, device state loaded, the guest run once: agent connected, own seed, link down, one command through the exec wrapper, then stopped); the spare is waited for before each timed create')
    notes.push('clone until create returns, from a spare: continue the guest, then one exec of the identity helper (clock, hostname, seed and CRNG reseed); the identity row is that exec alone, from the backend\'s phase timings')
    notes.push('first exec / later exec: /bin/true as root through backend.exec until its result, the first right after the create, the later one right after the first, in the same clone')
    notes.push(`idle CPU: one clone from a spare and one that started its own QEMU, both without a network, sampled once a second for ${idleSeconds} s side by side (utime + stime of the QEMU process)`)
    notes.push(`a waiting spare QEMU: ${(sparePssBytes / 2 ** 20).toFixed(1)} MiB PSS (the guest pages its one run touched, and the code QEMU translated for it)`)
    notes.push(`load average at the end: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
    notes.push(`memory: PSS of the ${clones} clone QEMU processes summed (/proc/PID/smaps_rollup), taken after each had run one command; the goal is 25% of ${clones} × ${goldenMiB} MiB`)
    const toMiB = (b: number) => b / 2 ** 20
    const coldBaseline = { what: `cold boot to ready (backend.create, ${goldenMiB} MiB)`, summary: summarize(cold) }
    return {
      name: 'qemu',
      title: `${this.title} (${backend.accel})`,
      figures: [
        { what: 'golden clone to ready, QEMU started per clone', unit: 'ms', subject: summarize(clone), baseline: coldBaseline },
        { what: 'golden clone to agent answering, QEMU started per clone', unit: 'ms', subject: summarize(agentReady.length ? agentReady : [Number.NaN]), baseline: coldBaseline, goal: { stat: 'p95', atMost: 100 } },
        { what: 'clone until create returns, from a spare', unit: 'ms', subject: summarize(cloneSpare.length ? cloneSpare : [Number.NaN]), baseline: coldBaseline, goal: { stat: 'p95', atMost: 100 } },
        { what: '  of which the identity step (one exec of the helper), from a spare', unit: 'ms', subject: summarize(identitySpare.length ? identitySpare : [Number.NaN]), baseline: null },
        { what: 'first exec in a fresh clone, QEMU started per clone', unit: 'ms', subject: summarize(firstExec), baseline: { what: 'a later exec in the same clone', summary: summarize(laterExec) } },
        { what: 'first exec in a fresh clone, from a spare', unit: 'ms', subject: summarize(firstExecSpare.length ? firstExecSpare : [Number.NaN]), baseline: { what: 'a later exec in the same clone', summary: summarize(laterExecSpare.length ? laterExecSpare : [Number.NaN]) } },
        {
          what: 'host CPU of an idle clone from a spare (ms per s)',
          unit: 'ms',
          subject: summarize(idleCpuSpare.length ? idleCpuSpare : [Number.NaN]),
          baseline: { what: 'an idle clone that started its own QEMU, beside it', summary: summarize(idleCpuPerClone.length ? idleCpuPerClone : [Number.NaN]) },
        },
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
