import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, readdir, stat } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { idPattern, isAlive, runProcess, SandstormError, silentLogger, type CallOptions, type Logger } from '../../shared/index.js'
import type { ExecSpec, MachineImage, OutputSink, RuntimeBackend, RuntimeProcess, RuntimeSandbox, SandboxSpec, SandboxStats } from '../backend.js'
import { cloneAgentTimeoutMs, freshen, guestNetwork } from './clone-guest.js'
import { connectGuestAgent, lazyGuestAgent, type GuestAgent } from './guest-agent.js'
import { buildGuest, type GuestArtifacts } from './guest-build.js'
import { guestFileOps } from './guest-file-ops.js'
import { startGuestProcess } from './guest-process.js'
import { connectJsonChannel, qmpMaxLine } from './json-channel.js'
import { machineFiles, readMachineConfig, type MachineConfig } from './machine-image.js'
import { saveVmMachine } from './machine-save.js'
import { migrateFromFile, migrateTimeoutMs } from './qmp.js'
import { vmFiles, type VmNic } from './qemu-args.js'
import { rootImageOf } from './root-size.js'
import { vmCgroup } from './vm-cgroup.js'
import { createVmHost, type Held, type Vm } from './vm-host.js'
import { createVmJail } from './vm-jail.js'
import { plugTap, randomMac, tapName } from './vm-network.js'
import { readVmRecord } from './vm-record.js'
import { createVmSpares } from './vm-spares.js'

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
  /**
   * QEMUs started ahead, per saved machine, for its next clones (from its first clone or
   * `prestart` on); each costs QEMU's own memory (no guest RAM until it runs). 0 turns this off.
   * @default 2
   */
  sparesPerMachine?: number
  /** Machines that keep spares at once (the least recently cloned loses them first). @default 4 */
  spareMachines?: number
  logger?: Logger
}

/** The QEMU backend, plus what only an agent that stops needs. */
export interface QemuBackend extends RuntimeBackend {
  /** The accelerator this backend's VMs use. */
  readonly accel: 'kvm' | 'tcg'
  /** Always there on this backend (optional in RuntimeBackend). */
  saveMachine(id: string, dir: string, options?: CallOptions): Promise<MachineImage>
  /**
   * Drops this process's connections to running VMs without stopping them (another backend can
   * take them over), and stops its pre-started QEMUs; resolves once those are gone.
   */
  close(): Promise<void>
  /** Starts the machine's spare QEMUs (waiting paused for its next clones) and resolves once they wait. */
  prestart(machine: MachineImage): Promise<void>
  /** How many spare QEMUs wait for clones of the machine in `machineDir`. */
  sparesReady(machineDir: string): number
  /** Stops the spare QEMUs of a machine (removing its directory does too). */
  dropSpares(machineDir: string): Promise<void>
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

/**
 * The name of a template's guest under `<dir>/guest`. The prefix is the guest's format: a guest
 * built by an older version (no network modules) is not reused. A root of one layer is named for
 * its path (as before layers, so its guest stays valid); a chain of layers for a hash of every
 * path in order, so that a chain that differs anywhere gets its own guest.
 */
export function guestCacheKey(lowerDirs: string | readonly string[]): string {
  const dirs = typeof lowerDirs === 'string' ? [lowerDirs] : lowerDirs
  if (dirs.length === 1) return `g2${dirs[0]!.replace(/[^a-zA-Z0-9]+/g, '_').slice(-78)}`
  // '-' never appears in a one-layer name: the two kinds cannot meet.
  return `g2-layers-${createHash('sha256').update(JSON.stringify(dirs)).digest('hex').slice(0, 40)}`
}

/** The QEMU backend: each sandbox is a `microvm` guest booted straight into the template's root, or a clone of a saved machine. */
export function createQemuBackend(options: QemuBackendOptions): QemuBackend {
  const log = options.logger ?? silentLogger()
  const accel = probeAccel(options.accel)
  const binary = options.binary ?? 'qemu-system-x86_64'
  const vmsDir = join(options.dir, 'vms')
  const memoryDir = options.memoryDir ?? '/dev/shm/sandstorm-qemu'
  const vms = new Map<string, Promise<Vm>>()
  const jail = runProcess(binary, ['-help']).then((r) => createVmJail(options.dir, r.stdout))
  jail.catch(() => undefined)
  const host = createVmHost({ dir: options.dir, memoryDir, binary, accel, jail, log })
  const spares = createVmSpares({ dir: options.dir, accel, host, perMachine: options.sparesPerMachine, maxMachines: options.spareMachines, log })
  /**
   * VMs a create of this backend is starting: their QMP socket is the create's. Adopting one (a
   * list or a call racing the create) would take QEMU's one QMP client slot and stall the create.
   */
  const starting = new Set<string>()
  const guests = new Map<string, Promise<GuestArtifacts>>()

  const dirOf = (id: string) => {
    if (!idPattern.test(id)) throw new SandstormError('invalid_argument', `sandbox id "${id}" is malformed`)
    return join(vmsDir, id)
  }
  /**
   * QMP takes one client at a time: a VM whose earlier backend just let go answers once QEMU's
   * main loop has seen that close, which took over 5 s on a loaded host under TCG.
   */
  const adoptQmpTimeoutMs = 30_000

  /** A VM this backend started, or one found on the host (started by an earlier backend): connected on first use. */
  function vmOf(id: string): Promise<Vm> {
    const dir = dirOf(id)
    let vm = vms.get(id)
    if (!vm && starting.has(id)) return Promise.reject(new SandstormError('failed_precondition', `VM sandbox "${id}" is still starting`))
    if (!vm) {
      vm = adopt(id, dir)
      vm.catch(() => vms.delete(id))
      vms.set(id, vm)
    }
    return vm
  }

  async function adopt(id: string, dir: string): Promise<Vm> {
    const pid = await host.readPid(dir)
    if (!pid || !isAlive(pid)) throw new SandstormError('not_found', `no VM sandbox "${id}" runs on this host`)
    const record = await readVmRecord(vmFiles(dir).record)
    const qmp = await connectJsonChannel(vmFiles(dir).qmp, 'QMP', qmpMaxLine)
    try {
      await qmp.call('qmp_capabilities', undefined, adoptQmpTimeoutMs)
      const status = await qmp.call<{ status: string }>('query-status', undefined, adoptQmpTimeoutMs)
      const paused = status.status !== 'running'
      // The guest agent connects on first use: listing VMs needs QMP alone, and a paused guest cannot answer.
      const agent = lazyGuestAgent(vmFiles(dir).qga, 10_000, () => !isAlive(pid))
      log.info({ sandboxId: id }, 'VM sandbox adopted')
      return { id, pid, qmp, agent, record, paused }
    } catch (err) {
      qmp.close()
      throw err
    }
  }

  /**
   * The guest of a template's root (its layers, topmost first). Its read-only binds (the `host`
   * template's /usr) are not part of a guest, as before layers: a VM has no host directories.
   */
  function guestFor(lowerDirs: readonly string[]): Promise<GuestArtifacts> {
    const key = guestCacheKey(lowerDirs)
    let g = guests.get(key)
    if (!g) {
      g = buildGuest({ dir: join(options.dir, 'guest', key), lowerDirs, logger: log })
      g.catch(() => guests.delete(key))
      guests.set(key, g)
    }
    return g
  }

  /** A clone must have its machine's memory and cpus, and run under the accelerator it was saved under. */
  async function cloneChecks(spec: Pick<SandboxSpec, 'memoryMiB' | 'cpus'>, machine: MachineImage) {
    const config = await readMachineConfig(machine.dir)
    if (spec.memoryMiB !== machine.memoryMiB || spec.cpus !== machine.cpus || config.memoryMiB !== machine.memoryMiB || config.cpus !== machine.cpus) {
      throw new SandstormError(
        'failed_precondition',
        `a clone of a saved machine must have its memory and cpus: the machine has ${config.memoryMiB} MiB and ${config.cpus} cpus, the sandbox asks for ${spec.memoryMiB} MiB and ${spec.cpus} cpus`,
      )
    }
    if (config.accel !== accel) {
      throw new SandstormError('failed_precondition', `saved machine ${basename(machine.dir)} was saved under ${config.accel}; this host runs VMs under ${accel}`)
    }
    return config
  }

  /** The rest of a create, once its directory is made: disk, QEMU (or a spare), network, guest agent. */
  async function createIn(spec: SandboxSpec, dir: string, machine: MachineImage | undefined, config: MachineConfig | null, guest: GuestArtifacts | { kernel: string; initramfs: string }, call: CallOptions, startedAt: number): Promise<RuntimeSandbox> {
    const files = vmFiles(dir)
    const hostname = spec.hostname.replace(/[^a-zA-Z0-9-]/g, '') || 'sandbox'
    // Where a create spends its time, from its start, for the log line (a clone's budget is ~100 ms).
    const phasesMs: Record<string, number> = {}
    let last = startedAt
    const mark = (phase: string) => {
      phasesMs[phase] = Date.now() - last
      last = Date.now()
    }
    mark('checks')
    const net = spec.network
    // Every VM of this version has a network device, on a tap when it has a network; a clone of a
    // machine saved without one (an older version's) has none, and then cannot have a network.
    if (config && !config.nic && net.mode === 'netns') {
      throw new SandstormError('failed_precondition', `saved machine ${basename(machine!.dir)} was saved without a network device (by a version before networking): its clones cannot have a network; create with network "none", or save the machine again`)
    }
    const nic: VmNic | undefined = config && !config.nic ? undefined : { tap: net.mode === 'netns' ? tapName(spec.id) : null, mac: randomMac() }
    const record = host.recordFor(spec.id, spec, guest, config, machine?.dir ?? null, spec.env, nic)
    // A clone's hostname is the machine's on the kernel command line; its own comes with its identity.
    if (!config) record.hostname = hostname
    const held: Held = { pid: null }
    try {
      const spare = machine ? spares.pool.take(machine.dir) : null
      let loaded = false
      let warmAgent: GuestAgent | undefined
      if (spare && (await spares.takeOver(spare, spec.id, dir, record))) {
        held.pid = spare.pid
        held.qmp = spare.qmp
        loaded = spare.loaded
        warmAgent = spare.agent
        mark('spare')
      } else {
        const ip = !machine && net.mode === 'netns' ? { address: net.address, gateway: net.gateway } : undefined
        const root = machine ? '' : (guest as GuestArtifacts).rootImage
        const rootImage = root && spec.diskMiB !== undefined ? await rootImageOf(root, spec.diskMiB) : root
        await host.launch(record, dir, machine?.dir ?? null, rootImage, held, call, mark, ip)
      }
      // QEMU holds its tap: into the sandbox's namespace with it, before the guest runs.
      if (record.nic?.tap && net.mode === 'netns') {
        await plugTap(record.nic.tap, net.netnsPath)
        mark('tap')
      }
      const pid = held.pid!
      const qmp = held.qmp!
      let agent: GuestAgent
      if (machine && warmAgent) {
        // A warmed spare: its agent is connected and its link is down already.
        agent = warmAgent
        await qmp.call('cont')
        mark('cont')
        await freshen(agent, hostname, config?.identityHelper === true)
        mark('identity')
        if (record.nic && net.mode === 'netns') {
          await guestNetwork(agent, record.nic.mac, { address: net.address, gateway: net.gateway })
          mark('network')
        }
      } else if (machine) {
        // The agent's guest-sync goes out while the state loads: it waits in the port for the guest to run.
        const agentReady = connectGuestAgent(files.qga, cloneAgentTimeoutMs, () => !isAlive(pid!))
        agentReady.catch(() => undefined)
        if (!loaded) {
          await migrateFromFile(qmp, host.filesMonitor(dir, record), machineFiles(machine.dir).state, migrateTimeoutMs)
          mark('state')
        }
        await qmp.call('cont')
        agent = await agentReady
        mark('agent')
        await freshen(agent, hostname, config?.identityHelper === true)
        mark('identity')
        if (record.nic) {
          // Its machine's link address and IP are in its memory: its own replace them.
          await guestNetwork(agent, record.nic.mac, net.mode === 'netns' ? { address: net.address, gateway: net.gateway } : null)
          mark('network')
        }
      } else {
        agent = await connectGuestAgent(files.qga, options.bootTimeoutMs ?? 120_000, () => !isAlive(pid!))
        await agent.setTime()
      }
      vms.set(spec.id, Promise.resolve({ id: spec.id, pid, qmp, agent, record, paused: false }))
      log.info({ sandboxId: spec.id, accel, machine: machine?.dir, phasesMs, spare: 'spare' in phasesMs }, machine ? 'VM sandbox cloned' : 'VM sandbox booted')
      // The machine's next clone finds a QEMU waiting: started in the background, after this one is up.
      if (machine) void spares.pool.fill(machine.dir)
      return { id: spec.id, status: 'running', pid }
    } catch (err) {
      await host.teardown(spec.id, dir, held.pid, held.qmp).catch(() => undefined)
      throw err
    }
  }

  const backend: QemuBackend = {
    name: 'qemu',
    accel,

    async close() {
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
      await spares.close()
    },

    async prestart(machine: MachineImage) {
      await cloneChecks({ memoryMiB: machine.memoryMiB, cpus: machine.cpus }, machine)
      await spares.pool.fill(machine.dir)
    },
    sparesReady: (machineDir: string) => spares.pool.ready(machineDir),
    dropSpares: (machineDir: string) => spares.pool.drop(machineDir),

    async create(spec: SandboxSpec, call: CallOptions = {}): Promise<RuntimeSandbox> {
      const startedAt = Date.now()
      const dir = dirOf(spec.id)
      const machine = spec.machine
      if (!machine && spec.rootfs.lowerDirs.length === 0) {
        throw new SandstormError('invalid_argument', 'the qemu runtime boots a template\'s root: expected at least 1 layer, got none')
      }
      const config = machine ? await cloneChecks(spec, machine) : null
      const guest = config ? { kernel: config.kernel, initramfs: config.initramfs } : await guestFor(spec.rootfs.lowerDirs)
      await mkdir(vmsDir, { recursive: true, mode: 0o700 })
      try {
        await mkdir(dir, { mode: 0o700 })
      } catch {
        throw new SandstormError('already_exists', `sandbox "${spec.id}" already exists on this host`)
      }
      starting.add(spec.id)
      try {
        return await createIn(spec, dir, machine, config, guest, call, startedAt)
      } finally {
        starting.delete(spec.id)
      }
    },

    async saveMachine(id: string, dir: string): Promise<MachineImage> {
      return saveVmMachine(await vmOf(id), dirOf(id), dir, host, log)
    },

    async destroy(id: string): Promise<void> {
      const dir = dirOf(id)
      const vm = await vms.get(id)?.catch(() => undefined)
      vms.delete(id)
      vm?.agent.close()
      const pid = vm?.pid ?? (await host.readPid(dir))
      await host.teardown(id, dir, pid || null, vm?.qmp)
      log.info({ sandboxId: id }, 'VM sandbox destroyed')
    },

    async list(): Promise<RuntimeSandbox[]> {
      const out: RuntimeSandbox[] = []
      for (const id of await readdir(vmsDir).catch(() => [] as string[])) {
        if (!idPattern.test(id)) continue
        const pid = await host.readPid(join(vmsDir, id))
        const running = pid > 0
        let paused = false
        if (running && !starting.has(id)) paused = (await vmOf(id).catch(() => null))?.paused ?? false
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
      const vm = await vmOf(id)
      // The guest's processes are not visible from the host: QEMU's threads count instead.
      const usage = await vmCgroup(id).usage()
      if (vm.record.diskMiB === undefined) return usage
      // What the guest wrote is what its overlay holds on the host.
      const disk = await stat(host.diskOf(dirOf(id), vm.record)).catch(() => null)
      return { ...usage, disk: { usedBytes: (disk?.blocks ?? 0) * 512, limitBytes: vm.record.diskMiB * 1024 * 1024 } }
    },

    async exec(id: string, spec: ExecSpec, sink: OutputSink, call: CallOptions = {}): Promise<RuntimeProcess> {
      const vm = await vmOf(id)
      return startGuestProcess(vm.agent, vm.record.env, spec, sink, call)
    },

    ...guestFileOps(async (id) => (await vmOf(id)).agent),
  }
  return backend
}
