import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { chmod, copyFile, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { idPattern, SandstormError, silentLogger, type CallOptions, type EntryInfo, type Logger } from '../../shared/index.js'
import type { ExecSpec, MachineImage, OutputSink, RuntimeBackend, RuntimeProcess, RuntimeSandbox, SandboxSpec, SandboxStats } from '../backend.js'
import { connectGuestAgent, lazyGuestAgent, type GuestAgent } from './guest-agent.js'
import { buildGuest, type GuestArtifacts } from './guest-build.js'
import { guestFsError, guestFsScripts, parseGuestListing, parseGuestStat } from './guest-fs.js'
import { guestBusybox, guestReseedPath, hostEpoch, identityScript } from './guest-scripts.js'
import { startGuestProcess } from './guest-process.js'
import { reseedHelper } from './reseed-helper.js'
import { connectJsonChannel, type JsonChannel } from './json-channel.js'
import { machineFiles, qcow2BackingFile, readMachineConfig, writeMachineConfig } from './machine-image.js'
import { ignoreSharedRam, migrateFromFile, migrateToFile } from './qmp.js'
import { qemuArgs, qemuOverheadMiB, vmFiles } from './qemu-args.js'
import { vmCgroup } from './vm-cgroup.js'
import { readVmRecord, writeVmRecord, type VmRecord } from './vm-record.js'

/** Accelerator choice: `auto` probes. */
export type QemuAccel = 'kvm' | 'tcg' | 'auto'

/** Options of the QEMU microVM backend. */
export interface QemuBackendOptions {
  /** VMs and the cached guest live under `<dir>/vms` and `<dir>/guest`. */
  dir: string
  /** Guest RAM files of running VMs (tmpfs: RAM that a save can copy and clones can share). @default '/dev/shm/sandstorm-qemu' */
  memoryDir?: string
  /** @default 'auto' */
  accel?: QemuAccel
  /** @default 'qemu-system-x86_64' */
  binary?: string
  /** How long a cold boot may take to a guest agent that answers. @default 120000 */
  bootTimeoutMs?: number
  logger?: Logger
}

/** The QEMU backend, plus what only an agent that stops needs. */
export interface QemuBackend extends RuntimeBackend {
  /** The accelerator this backend's VMs use. */
  readonly accel: 'kvm' | 'tcg'
  /** Always there on this backend (optional in RuntimeBackend). */
  saveMachine(id: string, dir: string, options?: CallOptions): Promise<MachineImage>
  /** Drops this process's connections to running VMs without stopping them (another backend can take them over). */
  close(): void
}

/**
 * KVM only when /dev/kvm exists and this host is not itself a VM: nested guests were measured far
 * slower than TCG on the build machines (a Debian kernel did not boot in 120 s under nested KVM).
 */
export function probeAccel(requested: QemuAccel = 'auto'): 'kvm' | 'tcg' {
  if (requested !== 'auto') return requested
  if (!existsSync('/dev/kvm')) return 'tcg'
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  return /^flags\s*:.*\bhypervisor\b/m.test(cpuinfo) ? 'tcg' : 'kvm'
}

const defaultPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
const readChunk = 1 << 20
/** A clone's guest agent answers within ~100 ms; a cold boot's within the boot timeout. */
const cloneAgentTimeoutMs = 30_000
const migrateTimeoutMs = 60_000

interface Vm {
  id: string
  pid: number
  qmp: JsonChannel
  agent: GuestAgent
  record: VmRecord
  paused: boolean
}

/** The QEMU backend: each sandbox is a `microvm` guest booted straight into the template's root, or a clone of a saved machine. */
export function createQemuBackend(options: QemuBackendOptions): QemuBackend {
  const log = options.logger ?? silentLogger()
  const accel = probeAccel(options.accel)
  const binary = options.binary ?? 'qemu-system-x86_64'
  const vmsDir = join(options.dir, 'vms')
  const memoryDir = options.memoryDir ?? '/dev/shm/sandstorm-qemu'
  const vms = new Map<string, Promise<Vm>>()
  const guests = new Map<string, Promise<GuestArtifacts>>()

  const dirOf = (id: string) => {
    if (!idPattern.test(id)) throw new SandstormError('invalid_argument', `sandbox id "${id}" is malformed`)
    return join(vmsDir, id)
  }
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  }
  const readPid = async (dir: string) => Number((await readFile(vmFiles(dir).pid, 'utf8').catch(() => '0')).trim()) || 0

  /** A VM this backend started, or one found on the host (started by an earlier backend): connected on first use. */
  function vmOf(id: string): Promise<Vm> {
    const dir = dirOf(id)
    let vm = vms.get(id)
    if (!vm) {
      vm = adopt(id, dir)
      vm.catch(() => vms.delete(id))
      vms.set(id, vm)
    }
    return vm
  }

  async function adopt(id: string, dir: string): Promise<Vm> {
    const pid = await readPid(dir)
    if (!pid || !alive(pid)) throw new SandstormError('not_found', `no VM sandbox "${id}" runs on this host`)
    const record = await readVmRecord(vmFiles(dir).record)
    const qmp = await connectJsonChannel(vmFiles(dir).qmp, 'QMP')
    try {
      await qmp.call('qmp_capabilities', undefined, 5000)
      const status = await qmp.call<{ status: string }>('query-status', undefined, 5000)
      const paused = status.status !== 'running'
      // The guest agent connects on first use: listing VMs needs QMP alone, and a paused guest cannot answer.
      const agent = lazyGuestAgent(vmFiles(dir).qga, 10_000, () => !alive(pid))
      log.info({ sandboxId: id }, 'VM sandbox adopted')
      return { id, pid, qmp, agent, record, paused }
    } catch (err) {
      qmp.close()
      throw err
    }
  }

  function guestFor(templateRoot: string): Promise<GuestArtifacts> {
    let g = guests.get(templateRoot)
    if (!g) {
      const key = templateRoot.replace(/[^a-zA-Z0-9]+/g, '_').slice(-80)
      g = buildGuest({ dir: join(options.dir, 'guest', key), templateRoot, logger: log })
      g.catch(() => guests.delete(templateRoot))
      guests.set(templateRoot, g)
    }
    return g
  }

  async function fsRun(id: string, op: string, path: string, script: string, args: string[]): Promise<string> {
    const r = await (await vmOf(id)).agent.run(guestBusybox, ['sh', '-c', script, 'sandstorm-fs', ...args])
    if (r.exitCode !== 0) throw guestFsError(op, path, r.stderr.toString())
    return r.stdout.toString()
  }

  /** Stops QEMU and removes everything the VM held: its dir, its own RAM file, its cgroup. */
  async function teardown(id: string, dir: string, pid: number | null, qmp?: JsonChannel) {
    const record = await readVmRecord(vmFiles(dir).record).catch(() => null)
    if (qmp) {
      await qmp.call('quit', undefined, 2000).catch(() => undefined)
      await Promise.race([qmp.closed, sleep(2000)])
      qmp.close()
    }
    if (pid && alive(pid)) process.kill(pid, 'SIGKILL')
    for (let i = 0; pid && alive(pid) && i < 400; i++) await sleep(5)
    await rm(dir, { recursive: true, force: true })
    // Only a VM's own RAM file goes; a clone's is the saved machine's, which its owner keeps.
    await rm(join(memoryDir, `${id}.ram`), { force: true })
    if (record?.memShared && dirname(record.memPath) === memoryDir) await rm(record.memPath, { force: true })
    await vmCgroup(id).remove()
  }

  /** Rebases a qcow2 disk onto the bottom of its backing chain (the raw guest root), copying what lies between. */
  async function rebaseOntoRoot(disk: string) {
    const info = await execa('qemu-img', ['info', '--backing-chain', '--output=json', disk])
    const chain = JSON.parse(String(info.stdout)) as { filename: string; format: string }[]
    const base = chain.at(-1)
    if (chain.length <= 2 || !base) return
    await execa('qemu-img', ['rebase', '-q', '-f', 'qcow2', '-F', base.format, '-b', base.filename, disk])
  }

  /** Starts QEMU inside the VM's cgroup (the starter joins it, then execs QEMU, which daemonizes). */
  async function startQemu(id: string, dir: string, args: string[], call: CallOptions): Promise<number> {
    const cgroup = vmCgroup(id)
    const script = 'for f in $SANDSTORM_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; exec "$@"'
    const started = await execa('/bin/sh', ['-c', script, 'sandstorm-qemu', binary, ...args], {
      env: { SANDSTORM_CGROUP_PROCS: cgroup.procsFiles.join(' ') },
      reject: false,
      all: true,
      cancelSignal: call.signal,
    })
    if (started.exitCode !== 0) throw new SandstormError('internal', `qemu did not start: ${String(started.all).trim().split('\n').pop()}`)
    return readPid(dir)
  }

  async function cloneChecks(spec: SandboxSpec, machine: MachineImage) {
    const config = await readMachineConfig(machine.dir)
    if (spec.memoryMiB !== machine.memoryMiB || spec.cpus !== machine.cpus || config.memoryMiB !== machine.memoryMiB || config.cpus !== machine.cpus) {
      throw new SandstormError(
        'failed_precondition',
        `a clone of a saved machine must have its memory and cpus: the machine has ${config.memoryMiB} MiB and ${config.cpus} cpus, the sandbox asks for ${spec.memoryMiB} MiB and ${spec.cpus} cpus`,
      )
    }
    if (config.accel !== accel) {
      throw new SandstormError('failed_precondition', `the machine in ${machine.dir} was saved under ${config.accel}; this host runs VMs under ${accel}`)
    }
    return config
  }

  /** Gives a freshly restored guest the host's clock and its own identity (hostname, a reseeded RNG), in one guest command. */
  async function freshen(agent: GuestAgent, hostname: string) {
    const r = await agent.run(guestBusybox, ['sh', '-c', identityScript, 'sandstorm-identity', hostname, randomBytes(64).toString('hex'), hostEpoch()])
    if (r.exitCode !== 0) throw new SandstormError('internal', `giving the clone its identity failed: ${r.stderr.toString().trim()}`)
  }

  const backend: QemuBackend = {
    name: 'qemu',
    accel,

    close() {
      for (const vm of vms.values()) {
        vm.then(
          (v) => {
            v.agent.close()
            v.qmp.close()
          },
          () => undefined,
        )
      }
      vms.clear()
    },

    async create(spec: SandboxSpec, call: CallOptions = {}): Promise<RuntimeSandbox> {
      const dir = dirOf(spec.id)
      if (spec.rootfs.lowerDirs.length !== 1) {
        throw new SandstormError('invalid_argument', `the qemu runtime boots a template's root alone; expected 1 layer, got ${spec.rootfs.lowerDirs.length}`)
      }
      const machine = spec.machine
      const config = machine ? await cloneChecks(spec, machine) : null
      const guest = config ? { kernel: config.kernel, initramfs: config.initramfs } : await guestFor(spec.rootfs.lowerDirs[0]!)
      await mkdir(vmsDir, { recursive: true, mode: 0o700 })
      try {
        await mkdir(dir, { mode: 0o700 })
      } catch {
        throw new SandstormError('already_exists', `sandbox "${spec.id}" already exists on this host`)
      }
      let pid: number | null = null
      let qmp: JsonChannel | undefined
      const files = vmFiles(dir)
      const hostname = spec.hostname.replace(/[^a-zA-Z0-9-]/g, '') || 'sandbox'
      // Where a create spends its time, for the log line (a clone's budget is ~100 ms).
      const phasesMs: Record<string, number> = {}
      let last = Date.now()
      const mark = (phase: string) => {
        phasesMs[phase] = Date.now() - last
        last = Date.now()
      }
      try {
        const saved = machine ? machineFiles(machine.dir) : null
        if (saved && (await qcow2BackingFile(saved.overlay)) === saved.disk) {
          await copyFile(saved.overlay, files.disk)
          await chmod(files.disk, 0o600)
        } else {
          const backing = saved ? ['-F', 'qcow2', '-b', saved.disk] : ['-F', 'raw', '-b', (guest as GuestArtifacts).rootImage]
          await execa('qemu-img', ['create', '-q', '-f', 'qcow2', ...backing, files.disk])
        }
        mark('disk')
        await mkdir(memoryDir, { recursive: true, mode: 0o700 })
        const record: VmRecord = {
          id: spec.id,
          memoryMiB: spec.memoryMiB,
          cpus: spec.cpus,
          accel,
          kernel: guest.kernel,
          initramfs: guest.initramfs,
          // A clone repeats the saved VM's command line: its kernel booted with that one.
          hostname: config ? config.hostname : hostname,
          memPath: machine ? machineFiles(machine.dir).memory : join(memoryDir, `${spec.id}.ram`),
          memShared: !machine,
          machineDir: machine?.dir ?? null,
          env: [`PATH=${defaultPath}`, ...Object.entries(spec.env).map(([k, v]) => `${k}=${v}`)],
        }
        await writeVmRecord(files.record, record)
        await vmCgroup(spec.id).create({ memoryMiB: spec.memoryMiB, cpus: spec.cpus, overheadMiB: qemuOverheadMiB })
        const args = qemuArgs({ ...record, dir, accel, incoming: !!machine })
        pid = await startQemu(spec.id, dir, args, call)
        qmp = await connectJsonChannel(files.qmp, 'QMP')
        await qmp.call('qmp_capabilities')
        await ignoreSharedRam(qmp)
        let agent: GuestAgent
        if (machine) {
          mark('qemu')
          // The agent's guest-sync goes out while the state loads: it waits in the port for the guest to run.
          const agentReady = connectGuestAgent(files.qga, cloneAgentTimeoutMs, () => !alive(pid!))
          agentReady.catch(() => undefined)
          await migrateFromFile(qmp, machineFiles(machine.dir).state, migrateTimeoutMs)
          mark('state')
          await qmp.call('cont')
          agent = await agentReady
          mark('agent')
          await freshen(agent, hostname)
          mark('identity')
        } else {
          agent = await connectGuestAgent(files.qga, options.bootTimeoutMs ?? 120_000, () => !alive(pid!))
          await agent.setTime()
        }
        vms.set(spec.id, Promise.resolve({ id: spec.id, pid, qmp, agent, record, paused: false }))
        log.info({ sandboxId: spec.id, accel, machine: machine?.dir, phasesMs }, machine ? 'VM sandbox cloned' : 'VM sandbox booted')
        return { id: spec.id, status: 'running', pid }
      } catch (err) {
        await teardown(spec.id, dir, pid, qmp).catch(() => undefined)
        throw err
      }
    },

    async saveMachine(id: string, dir: string): Promise<MachineImage> {
      const vm = await vmOf(id)
      await mkdir(dirname(dir), { recursive: true })
      try {
        await mkdir(dir, { mode: 0o755 })
      } catch {
        throw new SandstormError('already_exists', `expected a new directory for the saved machine, but ${dir} exists`)
      }
      const out = machineFiles(dir)
      const startedAt = Date.now()
      let stopped = false
      let stoppedAt = 0
      let pausedMs = 0
      try {
        // Clones must never wait for entropy: save only once the guest's CRNG is seeded.
        if (!vm.paused) {
          // The reseed helper goes into the guest's tmpfs, so that every clone finds it in RAM.
          const handle = await vm.agent.open(guestReseedPath, 'w')
          await vm.agent.write(handle, reseedHelper()).finally(() => vm.agent.closeFile(handle))
          const crng = await vm.agent.run(guestBusybox, ['sh', '-c', 'chmod 755 "$0" && head -c 1 /dev/random >/dev/null', guestReseedPath])
          if (crng.exitCode !== 0) throw new SandstormError('internal', `preparing the guest for a save failed: ${crng.stderr.toString().trim()}`)
          await vm.qmp.call('stop')
          stopped = true
          stoppedAt = Date.now()
        }
        // Stopped, the guest's RAM and disk hold still: device state, RAM and disk are one moment.
        await migrateToFile(vm.qmp, out.state, migrateTimeoutMs)
        if (vm.record.memShared) {
          await execa('cp', ['--sparse=always', vm.record.memPath, out.memory])
        } else {
          // A clone's RAM is a private mapping, so it went into the state stream; the file only gives it room.
          await execa('truncate', ['-s', `${vm.record.memoryMiB}M`, out.memory])
        }
        await execa('cp', ['--sparse=always', '--reflink=auto', vmFiles(dirOf(id)).disk, out.disk])
      } catch (err) {
        await rm(dir, { recursive: true, force: true })
        throw err
      } finally {
        if (stopped) {
          await vm.qmp.call('cont')
          pausedMs = Date.now() - stoppedAt
          await vm.agent.setTime().catch(() => undefined)
        }
      }
      try {
        // After the guest runs again (neither is part of the moment saved): a clone's disk is an
        // overlay on its machine's disk; rebased onto the guest root below that, this machine
        // stands alone and the one it came from can be deleted.
        if (!vm.record.memShared) await rebaseOntoRoot(out.disk)
        await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', out.disk, out.overlay])
      } catch (err) {
        await rm(dir, { recursive: true, force: true })
        throw err
      }
      await writeMachineConfig(dir, {
        format: 1,
        memoryMiB: vm.record.memoryMiB,
        cpus: vm.record.cpus,
        accel: vm.record.accel,
        kernel: vm.record.kernel,
        initramfs: vm.record.initramfs,
        hostname: vm.record.hostname,
        ramInState: !vm.record.memShared,
        savedAt: new Date().toISOString(),
      })
      for (const f of [out.memory, out.state, out.disk, out.overlay]) await chmod(f, 0o444)
      const sizes = await Promise.all([out.memory, out.state, out.disk].map((f) => stat(f).then((s) => s.blocks * 512)))
      log.info({ sandboxId: id, dir, ms: Date.now() - startedAt, pausedMs, memoryBytes: sizes[0], stateBytes: sizes[1], diskBytes: sizes[2] }, 'VM machine saved')
      return { dir, memoryMiB: vm.record.memoryMiB, cpus: vm.record.cpus }
    },

    async destroy(id: string): Promise<void> {
      const dir = dirOf(id)
      const vm = await vms.get(id)?.catch(() => undefined)
      vms.delete(id)
      vm?.agent.close()
      const pid = vm?.pid ?? (await readPid(dir))
      await teardown(id, dir, pid || null, vm?.qmp)
      log.info({ sandboxId: id }, 'VM sandbox destroyed')
    },

    async list(): Promise<RuntimeSandbox[]> {
      const out: RuntimeSandbox[] = []
      for (const id of await readdir(vmsDir).catch(() => [] as string[])) {
        if (!idPattern.test(id)) continue
        const pid = await readPid(join(vmsDir, id))
        const running = pid > 0 && alive(pid)
        let paused = false
        if (running) paused = (await vmOf(id).catch(() => null))?.paused ?? false
        out.push({ id, pid: running ? pid : null, status: !running ? 'stopped' : paused ? 'paused' : 'running' })
      }
      return out
    },

    async pause(id: string) {
      const vm = await vmOf(id)
      await vm.qmp.call('stop')
      vm.paused = true
    },
    async resume(id: string) {
      const vm = await vmOf(id)
      await vm.qmp.call('cont')
      vm.paused = false
      await vm.agent.setTime()
    },

    async stats(id: string): Promise<SandboxStats> {
      await vmOf(id)
      // The guest's processes are not visible from the host: QEMU's threads count instead.
      return vmCgroup(id).usage()
    },

    async exec(id: string, spec: ExecSpec, sink: OutputSink, call: CallOptions = {}): Promise<RuntimeProcess> {
      const vm = await vmOf(id)
      return startGuestProcess(vm.agent, vm.record.env, spec, sink, call)
    },

    async *readFile(id: string, path: string): AsyncIterable<Uint8Array> {
      const agent = (await vmOf(id)).agent
      const handle = await agent.open(path, 'r').catch((e: Error) => {
        throw guestFsError('read', path, e.message)
      })
      try {
        for (;;) {
          const r = await agent.read(handle, readChunk).catch((e: Error) => {
            throw guestFsError('read', path, e.message)
          })
          if (r.data.length > 0) yield r.data
          if (r.eof || r.data.length === 0) break
        }
      } finally {
        await agent.closeFile(handle).catch(() => undefined)
      }
    },

    async writeFile(id: string, path: string, data: AsyncIterable<Uint8Array>): Promise<void> {
      await fsRun(id, 'write', path, guestFsScripts.parentOf, [path])
      const agent = (await vmOf(id)).agent
      const handle = await agent.open(path, 'w').catch((e: Error) => {
        throw guestFsError('write', path, e.message)
      })
      try {
        for await (const chunk of data) {
          for (let at = 0; at < chunk.length; at += readChunk) await agent.write(handle, chunk.subarray(at, at + readChunk))
        }
      } finally {
        await agent.closeFile(handle).catch(() => undefined)
      }
    },

    async listDir(id: string, path: string): Promise<EntryInfo[]> {
      return parseGuestListing(await fsRun(id, 'list', path, guestFsScripts.list, [path]), path)
    },
    async stat(id: string, path: string): Promise<EntryInfo> {
      return parseGuestStat(await fsRun(id, 'stat', path, guestFsScripts.stat, [path]), path)
    },
    async mkdir(id: string, path: string, parents: boolean): Promise<void> {
      await fsRun(id, 'mkdir', path, parents ? guestFsScripts.mkdirParents : guestFsScripts.mkdir, [path])
    },
    async remove(id: string, path: string, recursive: boolean): Promise<void> {
      await fsRun(id, 'remove', path, recursive ? guestFsScripts.removeRecursive : guestFsScripts.remove, [path])
    },
    async rename(id: string, from: string, to: string): Promise<void> {
      await fsRun(id, 'rename', from, guestFsScripts.rename, [from, to])
    },
    async resolveUser(id: string, user: string) {
      if (user === 'root') return { uid: 0, gid: 0, home: '/root' }
      try {
        const [uid, gid, home] = (await fsRun(id, 'resolve user', user, guestFsScripts.resolveUser, [user])).split('\n')
        return { uid: Number(uid), gid: Number(gid), home: home || '/' }
      } catch {
        throw new SandstormError('invalid_argument', `user "${user}" does not exist in the sandbox (expected a name from its /etc/passwd, or a uid)`)
      }
    },
  }
  return backend
}
