/**
 * Golden memory snapshots on real QEMU (TCG here): one VM booted, a process started in it, its
 * machine saved, two clones started from it. One golden serves every case (a boot takes seconds).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createQemuBackend, vmUidRange } from '../src/runtime/index.js'
import type { MachineImage, RuntimeBackend, SandboxSpec } from '../src/runtime/index.js'
import { isAlive, newId, SandstormError } from '../src/shared/index.js'
import { createTemplateStore } from '../src/templates/index.js'
import { skipReason, templatesDir } from './helpers/stack.js'

const qemuDir = join(process.env.SANDSTORM_DATA_DIR ?? '/var/lib/sandstorm', 'qemu')

function qemuSkipReason(): string | false {
  const reason = skipReason()
  if (reason) return reason
  if (!existsSync('/usr/bin/qemu-system-x86_64')) return 'qemu-system-x86 is not installed: run scripts/setup.sh'
  return false
}

/** Spare QEMUs of this process: directory, pid and machine of each (see spare-pool.ts). */
async function sparesOnHost(): Promise<{ dir: string; pid: number; machineDir: string; uid?: number }[]> {
  const parent = join(qemuDir, 'spares', String(process.pid))
  const out: { dir: string; pid: number; machineDir: string; uid?: number }[] = []
  for (const id of await readdir(parent).catch(() => [] as string[])) {
    const dir = join(parent, id)
    const pid = Number(await readFile(join(dir, 'qemu.pid'), 'utf8').catch(() => '0'))
    const record = JSON.parse(await readFile(join(dir, 'vm.json'), 'utf8').catch(() => '{}')) as { machineDir?: string; uid?: number }
    out.push({ dir, pid, machineDir: record.machineDir ?? '', uid: record.uid })
  }
  return out
}

/** A process's uids (real, effective, saved, fs), gids, effective and permitted capabilities, seccomp mode and root. */
async function credentialsOf(pid: number) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const field = (name: string) => status.match(new RegExp(`^${name}:\\s*(.*)$`, 'm'))?.[1]?.trim().split(/\s+/) ?? []
  return { uids: field('Uid'), gids: field('Gid'), groups: field('Groups'), capEff: field('CapEff')[0], capPrm: field('CapPrm')[0], seccomp: field('Seccomp')[0], root: await readlink(`/proc/${pid}/root`) }
}

/** Polls a host condition that a backend reaches on its own (a watched directory's removal), up to 20 s. */
async function eventually(what: string, check: () => Promise<boolean>) {
  for (let i = 0; i < 400; i++) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 50))
  }
  assert.fail(`${what} did not happen within 20 s`)
}

/** Host objects a VM leaves behind after destroy (expected none). */
function leftovers(id: string): string[] {
  const cgroups = ['memory', 'cpu', 'cpuacct', 'pids'].map((c) => `/sys/fs/cgroup/${c}/sandstorm/${id}`)
  return [join(qemuDir, 'vms', id), `/dev/shm/sandstorm-qemu/${id}.ram`, ...cgroups].filter((p) => existsSync(p))
}

const skip = qemuSkipReason()

describe('qemu golden snapshots', { skip }, () => {
  let backend: ReturnType<typeof createQemuBackend>
  let spec: (id: string, machine?: MachineImage) => SandboxSpec
  let machineParent = ''
  let machine: MachineImage
  const golden = newId('sb')
  const clones = [newId('sb'), newId('sb')] as const
  const made: string[] = []
  /** The uids this suite's QEMUs ran as: each must be given back. */
  const jailUids = new Set<number>()
  /** The counter's value just before the save, and the pid of the loop that increments it. */
  let counterAtSave = 0
  let loopPid = ''

  async function run(b: RuntimeBackend, id: string, script: string) {
    let stdout = ''
    let stderr = ''
    const proc = await b.exec(
      id,
      { argv: ['/bin/sh', '-c', script], env: {}, cwd: '/', uid: 0, gid: 0 },
      { onStdout: (c) => (stdout += Buffer.from(c).toString()), onStderr: (c) => (stderr += Buffer.from(c).toString()) },
    )
    const result = await proc.result
    return { stdout: stdout.trim(), stderr, exitCode: result.exitCode }
  }

  /** Waits until the counter file moves past `than`, inside the guest, and returns the new value. */
  async function counterAfter(b: RuntimeBackend, id: string, than: number): Promise<number> {
    // Read once a turn: the loop's `echo > /tmp/counter` empties the file before it writes, and a
    // read that lands between the two gets nothing (it is read again, never taken as a number).
    // A loop that stopped fails after 30 s, not at the suite's timeout.
    const r = await run(b, id, `n=0; while c=$(cat /tmp/counter); [ -z "$c" ] || [ "$c" -le ${than} ]; do n=$((n+1)); [ $n -le 300 ] || exit 1; sleep 0.1; done; echo "$c"`)
    assert.equal(r.exitCode, 0, `the counter in ${id} did not move past ${than} within 30 s ${r.stderr}`)
    return Number(r.stdout)
  }

  /** The guest read its clock at some moment between two host readings: its offset lies between the two differences. */
  async function assertClockClose(id: string) {
    const before = Date.now() / 1000
    const guest = Number((await run(backend, id, '/bin/date +%s.%N')).stdout)
    const after = Date.now() / 1000
    assert.ok(guest - after < 2 && guest - before > -2, `guest clock ${guest} vs host ${before}..${after} in ${id}`)
  }

  before(async () => {
    const template = await createTemplateStore({ dir: templatesDir }).resolve('debian')
    backend = createQemuBackend({ dir: qemuDir })
    spec = (id, m) => ({ id, rootfs: template.rootfs, memoryMiB: 256, cpus: 1, pidsMax: 256, env: {}, hostname: id.replace('-', ''), network: { mode: 'none' }, machine: m })
    made.push(golden)
    await backend.create(spec(golden))
    // State held only in a running process: the loop's shell variable, written out on each turn.
    const started = await run(backend, golden, `sh -c 'echo $$ > /tmp/loop.pid; i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done' >/dev/null 2>&1 &
      while [ ! -s /tmp/counter ]; do sleep 0.05; done; cat /tmp/loop.pid`)
    loopPid = started.stdout
    // The golden's clock set an hour back: a clone shows the host's time only if the restore sets it.
    await run(backend, golden, `date -s @$(( $(date +%s) - 3600 )) >/dev/null`)
    counterAtSave = await counterAfter(backend, golden, 0)
    machineParent = await mkdtemp(join(tmpdir(), 'sandstorm-machine-'))
    machine = await backend.saveMachine(golden, join(machineParent, 'm'))
    for (const id of clones) {
      made.push(id)
      await backend.create(spec(id, machine))
    }
  })

  after(async () => {
    for (const id of made) await backend.destroy(id).catch(() => undefined)
    const spares = await sparesOnHost()
    for (const s of spares) if (s.uid !== undefined) jailUids.add(s.uid)
    await backend.close()
    if (machineParent) await rm(machineParent, { recursive: true, force: true })
    for (const id of made) assert.deepEqual(leftovers(id), [], `VM ${id} left nothing behind`)
    assert.deepEqual(await sparesOnHost(), [], 'closing the backend stopped its spare QEMUs')
    for (const s of spares) assert.ok(!isAlive(s.pid), `spare QEMU ${s.pid} is gone`)
    for (const s of spares) assert.deepEqual(leftovers(s.dir.split('/').pop()!), [], `spare ${s.dir} left no cgroup`)
    assert.ok(jailUids.size > 0)
    for (const uid of jailUids) assert.ok(!existsSync(join(qemuDir, 'uids', String(uid))), `uid ${uid} was given back`)
  })

  it('a clone takes a pre-started QEMU, and has its own hostname and clock before its first command', async () => {
    await backend.prestart(machine)
    assert.equal(backend.sparesReady(machine.dir), 2)
    const waiting = (await sparesOnHost()).filter((s) => s.machineDir === machine.dir)
    assert.equal(waiting.length, 2)
    const id = newId('sb')
    made.push(id)
    const { pid } = await backend.create(spec(id, machine))
    assert.ok(waiting.some((s) => s.pid === pid), `the clone runs in a spare QEMU (pid ${pid})`)
    assert.equal((await run(backend, id, 'hostname')).stdout, id.replace('-', ''))
    await assertClockClose(id)
    assert.equal((await run(backend, id, `kill -0 ${loopPid} && echo alive`)).stdout, 'alive')
    const procs = await readFile(`/sys/fs/cgroup/memory/sandstorm/${id}/cgroup.procs`, 'utf8')
    assert.ok(procs.split('\n').includes(String(pid)), "the spare's cgroup became the sandbox's")
    await backend.destroy(id)
    assert.deepEqual(leftovers(id), [])
  })

  it('saves memory, device state, disk and config, read-only', async () => {
    assert.deepEqual(machine, { dir: join(machineParent, 'm'), memoryMiB: 256, cpus: 1 })
    const config = JSON.parse(await readFile(join(machine.dir, 'config.json'), 'utf8')) as { memoryMiB: number; cpus: number }
    assert.equal(config.memoryMiB, 256)
    assert.equal(config.cpus, 1)
    for (const f of ['memory.ram', 'state.bin', 'disk.qcow2']) assert.ok(existsSync(join(machine.dir, f)), f)
  })

  it('a process started before the save runs on in every clone, with its state', async () => {
    for (const id of clones) {
      const alive = await run(backend, id, `kill -0 ${loopPid} && echo alive`)
      assert.equal(alive.stdout, 'alive', `the loop (pid ${loopPid}) runs in ${id}`)
      // The loop counts on from where it was, not from zero: its variable came with the memory.
      const next = await counterAfter(backend, id, counterAtSave)
      assert.ok(next > counterAtSave, `counter ${next} in ${id} moved on from ${counterAtSave}`)
    }
  })

  it('two clones diverge', async () => {
    const [a, b] = clones
    await backend.writeFile(a, '/root/only-in-a', (async function* () {
      yield Buffer.from('a')
    })())
    assert.equal((await run(backend, a, 'cat /root/only-in-a')).stdout, 'a')
    await assert.rejects(backend.stat(b, '/root/only-in-a'), (e: unknown) => e instanceof SandstormError && e.code === 'not_found')
    // Each has its own identity.
    assert.equal((await run(backend, a, 'hostname')).stdout, a.replace('-', ''))
    assert.equal((await run(backend, b, 'hostname')).stdout, b.replace('-', ''))
  })

  it('the guest clock is within 2 s of the host after a restore', async () => {
    for (const id of clones) await assertClockClose(id)
  })

  it('the saved VM goes on running, its clock set again', async () => {
    const next = await counterAfter(backend, golden, counterAtSave)
    assert.ok(next > counterAtSave)
    await assertClockClose(golden)
  })

  it('a clone whose memory or cpus differ from the machine is refused', async () => {
    const id = newId('sb')
    await assert.rejects(backend.create({ ...spec(id, machine), memoryMiB: 512 }), (e: unknown) => e instanceof SandstormError && e.code === 'failed_precondition')
    await assert.rejects(backend.create({ ...spec(id, machine), cpus: 2 }), (e: unknown) => e instanceof SandstormError && e.code === 'failed_precondition')
    assert.deepEqual(leftovers(id), [])
  })

  it('QEMU runs in its own cgroup with the VM limits', async () => {
    const [vm] = await backend.list().then((l) => l.filter((s) => s.id === clones[0]))
    assert.ok(vm?.pid)
    const procs = await readFile(`/sys/fs/cgroup/memory/sandstorm/${clones[0]}/cgroup.procs`, 'utf8')
    assert.ok(procs.split('\n').includes(String(vm.pid)), 'the QEMU process is in the memory cgroup')
    const limit = Number(await readFile(`/sys/fs/cgroup/memory/sandstorm/${clones[0]}/memory.limit_in_bytes`, 'utf8'))
    assert.ok(limit > 256 * 2 ** 20 && limit < 1024 * 2 ** 20, `memory limit ${limit} is guest RAM plus QEMU's overhead`)
    assert.equal((await readFile(`/sys/fs/cgroup/cpu/sandstorm/${clones[0]}/cpu.cfs_quota_us`, 'utf8')).trim(), '100000')
    assert.equal((await run(backend, clones[0], 'grep -c ^processor /proc/cpuinfo')).stdout, '1')
  })

  it('each QEMU runs jailed: a uid of its own, no capability, its seccomp filter, an empty root', async () => {
    // The booted golden, a clone from a spare and clones started on demand, and the spares waiting.
    const running = (await backend.list()).filter((s) => made.includes(s.id) && s.pid)
    const pids = [...running.map((s) => s.pid!), ...(await sparesOnHost()).map((s) => s.pid)]
    assert.ok(pids.length >= 4, `${pids.length} QEMUs to look at`)
    for (const pid of pids) {
      const c = await credentialsOf(pid)
      const uid = Number(c.uids[0])
      assert.ok(uid >= vmUidRange.first && uid < vmUidRange.first + vmUidRange.count, `QEMU ${pid} runs as uid ${uid}`)
      assert.deepEqual(c.uids, [String(uid), String(uid), String(uid), String(uid)], 'real, effective, saved and fs uid alike: root cannot come back')
      assert.deepEqual(c.gids, [String(uid), String(uid), String(uid), String(uid)])
      assert.deepEqual(c.groups, [String(uid)], 'no supplementary group of root')
      assert.equal(c.capEff, '0000000000000000')
      assert.equal(c.capPrm, '0000000000000000')
      assert.equal(c.seccomp, '2', "QEMU's own seccomp filter is loaded")
      assert.equal(c.root, join(qemuDir, 'jail'), 'QEMU is shut in the empty jail')
      // A directory held open would be a way out of the jail (openat from it).
      for (const fd of await readdir(`/proc/${pid}/fd`)) {
        const what = await stat(`/proc/${pid}/fd/${fd}`).catch(() => null)
        assert.ok(!what?.isDirectory(), `QEMU ${pid} holds no directory open (fd ${fd}: ${await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '?')})`)
      }
      assert.ok(!jailUids.has(uid), `uid ${uid} is held by one QEMU only`)
      jailUids.add(uid)
    }
    assert.deepEqual(await readdir(join(qemuDir, 'jail')), [], 'the jail is empty')
  })

  it('a guest that exhausts its memory dies alone', async () => {
    const [victim, other] = clones
    // tail keeps the last lines of an endless line: it grows until the guest kernel kills it.
    const hog = await run(backend, victim, 'tail /dev/zero')
    assert.notEqual(hog.exitCode, 0, 'the memory hog was killed')
    const dmesg = await run(backend, victim, 'dmesg | grep -c "Out of memory" || true')
    assert.ok(Number(dmesg.stdout) >= 1, 'the guest kernel OOM-killed inside')
    assert.equal((await run(backend, victim, 'echo up')).stdout, 'up', 'the VM itself lives on')
    const oom = await readFile(`/sys/fs/cgroup/memory/sandstorm/${victim}/memory.oom_control`, 'utf8')
    assert.match(oom, /oom_kill 0/, 'the host never OOM-killed in the QEMU cgroup')
    assert.equal((await run(backend, other, 'echo up')).stdout, 'up', 'another VM is unaffected')
  })

  it('after an agent restart, a new backend finds the VMs and drives them', async () => {
    await backend.close()
    backend = createQemuBackend({ dir: qemuDir })
    const listed = await backend.list()
    for (const id of [golden, ...clones]) assert.ok(listed.some((s) => s.id === id && s.status === 'running'), `${id} is listed as running`)
    assert.equal((await run(backend, clones[1], 'echo again')).stdout, 'again')
    const chunks: Buffer[] = []
    for await (const c of backend.readFile(clones[1], '/etc/hostname')) chunks.push(Buffer.from(c))
    assert.ok(chunks.length > 0)
    // A machine saved by the earlier backend still clones.
    const id = newId('sb')
    made.push(id)
    await backend.create(spec(id, machine))
    assert.equal((await run(backend, id, 'kill -0 ' + loopPid + ' && echo alive')).stdout, 'alive')
  })

  it('a destroy ends what a taken-over QEMU forked, whatever pid its pid file names, and gives its uid back', async () => {
    const id = newId('sb')
    made.push(id)
    const { pid } = await backend.create(spec(id, machine))
    const uid = Number((await credentialsOf(pid!)).uids[0])
    // What a QEMU the guest took over can do: fork (a child in its cgroup) and write its pid file (it holds it open).
    const forked = spawn('sleep', ['600'], { stdio: 'ignore' })
    const bystander = spawn('sleep', ['600'], { stdio: 'ignore' })
    try {
      for (const c of ['memory', 'cpu', 'cpuacct', 'pids']) await writeFile(`/sys/fs/cgroup/${c}/sandstorm/${id}/cgroup.procs`, String(forked.pid))
      await writeFile(join(qemuDir, 'vms', id, 'qemu.pid'), `${bystander.pid}\n`)
      // A later agent, which knows the VM only by its files.
      await backend.close()
      backend = createQemuBackend({ dir: qemuDir })
      await backend.destroy(id)
      await eventually('the forked process is killed', async () => forked.exitCode !== null || forked.signalCode !== null)
      await eventually('the QEMU is gone', async () => !isAlive(pid!))
      assert.equal(bystander.exitCode, null, 'the process its pid file named lives on')
      assert.equal(bystander.signalCode, null)
      assert.deepEqual(leftovers(id), [])
      assert.ok(!existsSync(join(qemuDir, 'uids', String(uid))), `uid ${uid} was given back`)
    } finally {
      forked.kill('SIGKILL')
      bystander.kill('SIGKILL')
    }
  })

  it('a clone whose take-over of a spare fails starts its own QEMU, and the spare is gone whole: QEMU, uid, disk, tap, cgroups', async () => {
    await backend.prestart(machine)
    const waiting = (await sparesOnHost()).filter((s) => s.machineDir === machine.dir)
    assert.equal(waiting.length, 2)
    const id = newId('sb')
    made.push(id)
    // A cgroup of the sandbox's name in one controller: the spare's cgroup renames in the others,
    // then fails, so that the failure finds it half under each name and its directory moved.
    await mkdir(`/sys/fs/cgroup/pids/sandstorm/${id}`)
    const { pid } = await backend.create(spec(id, machine))
    assert.ok(!waiting.some((s) => s.pid === pid), 'the clone runs in a QEMU of its own')
    assert.equal((await run(backend, id, `kill -0 ${loopPid} && echo alive`)).stdout, 'alive')
    const taken = waiting.filter((s) => !isAlive(s.pid))
    assert.equal(taken.length, 1, 'one spare was taken and stopped')
    const spareId = taken[0]!.dir.split('/').pop()!
    assert.deepEqual(leftovers(spareId), [], "no cgroup of the spare's name")
    assert.ok(!existsSync(join(qemuDir, 'disks', `${spareId}.qcow2`)), "the spare's disk is removed")
    assert.ok(!existsSync(`/sys/class/net/sbt${spareId.slice(-12)}`), "the spare's tap is removed")
    assert.ok(taken[0]!.uid !== undefined && !existsSync(join(qemuDir, 'uids', String(taken[0]!.uid))), `the spare's uid ${taken[0]!.uid} was given back`)
    const procs = await readFile(`/sys/fs/cgroup/pids/sandstorm/${id}/cgroup.procs`, 'utf8')
    assert.deepEqual(procs.split('\n').filter(Boolean), [String(pid)], "the sandbox's cgroup holds its own QEMU alone")
    await backend.destroy(id)
    assert.deepEqual(leftovers(id), [])
  })

  it('a machine saved from a clone clones too', async () => {
    const [, source] = clones
    await backend.writeFile(source, '/root/from-the-clone', (async function* () {
      yield Buffer.from('kept')
    })())
    const second = await backend.saveMachine(source, join(machineParent, 'from-clone'))
    const id = newId('sb')
    made.push(id)
    await backend.create(spec(id, second))
    assert.equal((await run(backend, id, 'cat /root/from-the-clone')).stdout, 'kept')
    assert.equal((await run(backend, id, `kill -0 ${loopPid} && echo alive`)).stdout, 'alive')
    assert.equal((await run(backend, source, 'echo still')).stdout, 'still', 'the saved clone runs on')
  })

  it('removing the saved machine leaves its clones running, and a machine saved from a clone stands alone', async () => {
    await backend.prestart(machine)
    const waiting = (await sparesOnHost()).filter((s) => s.machineDir === machine.dir)
    assert.ok(waiting.length > 0, 'the machine has spare QEMUs')
    await rm(join(machineParent, 'm'), { recursive: true, force: true })
    // Its spares map its (removed) memory file: the backend sees the directory go and stops them.
    await eventually('stopping the removed machine\'s spares', async () => (await sparesOnHost()).every((s) => s.machineDir !== machine.dir))
    for (const s of waiting) assert.ok(!isAlive(s.pid), `spare QEMU ${s.pid} is gone`)
    assert.equal(backend.sparesReady(machine.dir), 0)
    const id = newId('sb')
    made.push(id)
    const second = { dir: join(machineParent, 'from-clone'), memoryMiB: 256, cpus: 1 }
    await backend.create(spec(id, second))
    assert.equal((await run(backend, id, 'cat /root/from-the-clone /etc/hostname >/dev/null && echo ok')).stdout, 'ok')
    const [a] = clones
    // Writing reads the untouched rest of the cluster from the removed (still open) disk.
    assert.equal((await run(backend, a, 'echo x > /root/after-removal && cat /etc/hostname >/dev/null && echo ok')).stdout, 'ok')
    assert.ok((await counterAfter(backend, a, counterAtSave)) > counterAtSave)
  })
})
