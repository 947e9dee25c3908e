import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, renameSync } from 'node:fs'
import { chmod, copyFile, mkdir, readdir, rm, rmdir, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { idPattern, isAlive, newId, SandstormError, silentLogger, type CallOptions, type EntryInfo, type Logger } from '../../shared/index.js'
import type { ExecSpec, MachineImage, OutputSink, RuntimeBackend, RuntimeProcess, RuntimeSandbox, SandboxSpec, SandboxStats } from '../backend.js'
import { connectGuestAgent, lazyGuestAgent, type GuestAgent } from './guest-agent.js'
import { buildGuest, type GuestArtifacts } from './guest-build.js'
import { guestFsError, guestFsScripts, parseGuestListing, parseGuestStat } from './guest-fs.js'
import { guestBusybox, guestIdentityPath, guestNetworkScript, guestReseedPath, hostEpoch, identityScript } from './guest-scripts.js'
import { startGuestProcess } from './guest-process.js'
import { identityHelper, identityRecord, reseedHelper } from './reseed-helper.js'
import { connectJsonChannel, qmpMaxLine, type JsonChannel } from './json-channel.js'
import { rootImageOf } from './root-size.js'
import { machineFiles, qcow2BackingFile, readMachineConfig, writeMachineConfig, type MachineConfig } from './machine-image.js'
import { createSparePool, type Spare } from './spare-pool.js'
import { ignoreSharedRam, migrateFromFile, migrateToFile } from './qmp.js'
import { qemuArgs, qemuOverheadMiB, vmFiles, type VmNic } from './qemu-args.js'
import { createTap, plugTap, randomMac, removeTap, tapName } from './vm-network.js'
import { vmCgroup } from './vm-cgroup.js'
import { createVmJail } from './vm-jail.js'
import { readVmRecord, writeVmRecord, type VmRecord } from './vm-record.js'
import { isQemuOf, recordQemuProcess, runningQemuPid } from './vm-process.js'

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

const defaultPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
const readChunk = 1 << 20
/** A clone's guest agent answers within ~100 ms; a cold boot's within the boot timeout. */
const cloneAgentTimeoutMs = 30_000
const migrateTimeoutMs = 60_000
/** The command a spare runs to warm its guest's exec path (a `true`) is killed after this. */
const warmExecTimeoutMs = 10_000

interface Vm {
  id: string
  pid: number
  qmp: JsonChannel
  agent: GuestAgent
  record: VmRecord
  paused: boolean
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
  const jail = execa(binary, ['-help'], { reject: false }).then((r) => createVmJail(options.dir, String(r.stdout)))
  jail.catch(() => undefined)
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
  const diskOf = (dir: string, record: VmRecord) => record.diskPath ?? vmFiles(dir).disk
  /** Disks of VMs started as spares: a path that stays when the spare's directory becomes a sandbox's. */
  const disksDir = join(options.dir, 'disks')
  /** The pid of the VM's QEMU while that QEMU runs, else 0 (its pid file may outlive it). */
  const readPid = (dir: string) => runningQemuPid(vmFiles(dir).pid, vmFiles(dir).started)

  /**
   * QMP takes one client at a time: a VM whose earlier backend just let go answers once QEMU's
   * main loop has seen that close, which took over 5 s on a loaded host under TCG.
   */
  const adoptQmpTimeoutMs = 30_000
  /** How long a QEMU this backend just started may take to answer its first QMP command. */
  const qmpReadyTimeoutMs = 30_000

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
    const pid = await readPid(dir)
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
    // Only a real QEMU pid: kill(2) reads 0, -1 and negatives as groups or every process. And only
    // while it is still this VM's QEMU (running, or killed and not yet reaped): once that is gone,
    // the pid may be anyone's. Its pid is waited for until free, its cgroup empty.
    const started = vmFiles(dir).started
    if (pid !== null && !(pid > 1 && (await isQemuOf(pid, started, true)))) pid = null
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // reaped between the check and the signal
      }
    }
    for (let i = 0; pid && (await isQemuOf(pid, started, true)) && i < 400; i++) await sleep(5)
    await rm(dir, { recursive: true, force: true })
    // A tap still on the host (a spare's, or a start that failed before it moved); a moved one went with its namespace.
    if (record?.nic?.tap) await removeTap(record.nic.tap)
    if (record?.diskPath && dirname(record.diskPath) === disksDir) await rm(record.diskPath, { force: true })
    // Only a VM's own RAM file goes; a clone's is the saved machine's, which its owner keeps.
    await rm(join(memoryDir, `${id}.ram`), { force: true })
    if (record?.memShared && dirname(record.memPath) === memoryDir) await rm(record.memPath, { force: true })
    // Whatever else runs in its cgroup goes too: a QEMU the guest took over may have forked, or
    // written another pid into its pid file. Its uid is free only once nothing runs as it.
    const cgroup = vmCgroup(id)
    const emptied = await cgroup.killAll()
    const removed = await cgroup.remove()
    if (record?.uid !== undefined) {
      if (emptied && removed) await (await jail).release(record.uid)
      else log.error({ sandboxId: id, uid: record.uid }, 'processes of a VM outlived SIGKILL: its uid stays claimed')
    }
  }

  /** The monitor a VM's QEMU takes state files on; null for a QEMU of a version before jails (it opens them itself). */
  const filesMonitor = (dir: string, record: VmRecord) => (record.uid !== undefined ? vmFiles(dir).qmpFiles : null)

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
    return recordQemuProcess(vmFiles(dir).pid, vmFiles(dir).started)
  }

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

  /** Gives a freshly restored guest the host's clock and its own identity (hostname, a reseeded RNG), in one guest command. */
  async function freshen(agent: GuestAgent, hostname: string, helper: boolean) {
    if (helper) {
      // One exec of a static program, no shell: the record (time taken last) comes on its stdin.
      const r = await agent.run(guestIdentityPath, [], [], identityRecord(hostname, randomBytes(64), Date.now()))
      if (r.exitCode !== 0) throw new SandstormError('internal', `giving the clone its identity failed: the helper exited with ${r.exitCode} (an errno; 100: short record)`)
      return
    }
    const r = await agent.run(guestBusybox, ['sh', '-c', identityScript, 'sandstorm-identity', hostname, randomBytes(64).toString('hex'), hostEpoch()])
    if (r.exitCode !== 0) throw new SandstormError('internal', `giving the clone its identity failed: ${r.stderr.toString().trim()}`)
  }

  /** Gives a restored guest its own link address and IP (its memory holds its machine's), or takes its link down (`ip` null). */
  async function guestNetwork(agent: GuestAgent, mac: string, ip: { address: string; gateway: string } | null) {
    const args = ip ? [mac, ip.address, ip.gateway] : ['', '', '']
    const r = await agent.run(guestBusybox, ['sh', '-c', guestNetworkScript, 'sandstorm-network', ...args])
    if (r.exitCode !== 0) throw new SandstormError('internal', `giving the clone its network failed: ${r.stderr.toString().trim()}`)
  }

  /**
   * Runs a spare's restored guest once, then stops it again, so that its clone's create and first
   * command do not pay for the guest's first run. Under TCG each QEMU translates guest code the
   * first time it runs, so in a fresh QEMU the guest agent's first answer, the identity helper's
   * exec and the first command's wrapper, program and output files each cost several times what
   * they cost later (measured: 100-250 ms for the agent's first answer, ~350 ms for the identity
   * exec). Here the guest answers the agent, is given an identity of its own at once (a fresh seed
   * and CRNG reseed: what it draws from now on is its own; hostname and clock come again with its
   * clone's identity), takes its link down (a clone without a network needs nothing more), runs one
   * command through the exec wrapper as a user's command runs (output files, their reads, their
   * removal), and stops. It ran for about a second past its machine's save; nothing of it is left
   * running. The connected agent goes with the spare.
   */
  async function warmSpare(spare: Spare, config: MachineConfig, nic: VmNic | undefined): Promise<GuestAgent> {
    await spare.qmp.call('cont')
    const agent = await connectGuestAgent(vmFiles(spare.dir).qga, cloneAgentTimeoutMs, () => !isAlive(spare.pid))
    try {
      await freshen(agent, config.hostname, config.identityHelper === true)
      if (nic) await guestNetwork(agent, nic.mac, null)
      const silent = { onStdout: () => undefined, onStderr: () => undefined }
      // Its exit status does not matter (an image may lack `true`): the path to it is what warms. The
      // image's own `true` is run, so its loader and libc warm too; bounded, whatever the image has.
      // By its path: the wrapper's busybox `setsid` runs a bare `true` as its own applet, which left
      // the loader and libc cold, and a clone's first command about 20 ms slower than later ones.
      const warm = { argv: ['/bin/true'], env: {}, cwd: '/', uid: 0, gid: 0, timeoutMs: warmExecTimeoutMs }
      await (await startGuestProcess(agent, [`PATH=${defaultPath}`], warm, silent)).result
      await spare.qmp.call('stop')
    } catch (err) {
      agent.close()
      throw err
    }
    return agent
  }

  /** What a create or a spare has started so far, for the teardown of one that fails. */
  interface Held {
    pid: number | null
    qmp?: JsonChannel
  }

  /** A VM's record: a clone repeats its machine's boot files and hostname (its kernel booted with those). */
  function vmRecordFor(id: string, size: { memoryMiB: number; cpus: number; diskMiB?: number }, guest: { kernel: string; initramfs: string }, config: MachineConfig | null, machineDir: string | null, env: Record<string, string>, nic: VmNic | undefined): VmRecord {
    // A clone's disk is its machine's.
    const diskMiB = config ? config.diskMiB : size.diskMiB
    return {
      ...(nic ? { nic } : {}),
      ...(diskMiB !== undefined ? { diskMiB } : {}),
      id,
      memoryMiB: size.memoryMiB,
      cpus: size.cpus,
      accel,
      kernel: guest.kernel,
      initramfs: guest.initramfs,
      hostname: config?.hostname ?? 'sandbox',
      memPath: machineDir ? machineFiles(machineDir).memory : join(memoryDir, `${id}.ram`),
      memShared: !machineDir,
      machineDir,
      identityHelper: config?.identityHelper === true,
      env: [`PATH=${defaultPath}`, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)],
    }
  }

  /** Disk, record, cgroup, QEMU started (paused, for a clone) and QMP ready; what it started goes into `held`. */
  async function launch(record: VmRecord, dir: string, machineDir: string | null, rootImage: string, held: Held, call: CallOptions, mark: (phase: string) => void, ip?: { address: string; gateway: string }) {
    const files = vmFiles(dir)
    const disk = diskOf(dir, record)
    const saved = machineDir ? machineFiles(machineDir) : null
    if (saved && (await qcow2BackingFile(saved.overlay)) === saved.disk) {
      await copyFile(saved.overlay, disk)
      await chmod(disk, 0o600)
    } else {
      const backing = saved ? ['-F', 'qcow2', '-b', saved.disk] : ['-F', 'raw', '-b', rootImage]
      await execa('qemu-img', ['create', '-q', '-f', 'qcow2', ...backing, disk])
    }
    mark('disk')
    await mkdir(memoryDir, { recursive: true, mode: 0o700 })
    const vmJail = await jail
    // Claimed before the record names it, so that a teardown always finds what to give back.
    record.uid = await vmJail.claim()
    await writeVmRecord(files.record, record).catch(async (err: unknown) => {
      await vmJail.release(record.uid!)
      throw err
    })
    await vmCgroup(record.id).create({ memoryMiB: record.memoryMiB, cpus: record.cpus, overheadMiB: qemuOverheadMiB })
    if (record.nic?.tap) await createTap(record.nic.tap)
    held.pid = await startQemu(record.id, dir, qemuArgs({ ...record, dir, accel, incoming: !!machineDir, jailArgs: vmJail.args(record.uid), ...(ip ? { ip } : {}) }), call)
    held.qmp = await connectJsonChannel(files.qmp, 'QMP', qmpMaxLine)
    // QEMU answers at once; a bound keeps a channel that never got the client slot from hanging the start.
    await held.qmp.call('qmp_capabilities', undefined, qmpReadyTimeoutMs)
    await ignoreSharedRam(held.qmp)
    mark('qemu')
  }

  /** Spares of this process live under a directory named for it, so a later backend can tell them from its own. */
  const sparesDir = join(options.dir, 'spares', String(process.pid))
  let swept = false

  /** Stops spares a backend process that is gone left behind (its directory outlived it). */
  async function sweepSpares() {
    swept = true
    const parent = dirname(sparesDir)
    for (const owner of await readdir(parent).catch(() => [] as string[])) {
      if (owner === String(process.pid) || isAlive(Number(owner))) continue
      for (const id of await readdir(join(parent, owner)).catch(() => [] as string[])) {
        if (!idPattern.test(id)) continue
        const dir = join(parent, owner, id)
        await teardown(id, dir, (await readPid(dir)) || null).catch((err: unknown) => log.warn({ err, dir }, 'removing a stale spare QEMU failed'))
      }
      await rm(join(parent, owner), { recursive: true, force: true })
    }
  }

  /** A QEMU started for a clone of the machine, waiting paused with its memory mapped. */
  async function startSpare(machineDir: string): Promise<Spare> {
    if (!swept) await sweepSpares()
    const config = await readMachineConfig(machineDir)
    if (config.accel !== accel) throw new SandstormError('failed_precondition', `saved machine ${basename(machineDir)} was saved under ${config.accel}; this host runs VMs under ${accel}`)
    const id = newId('sp')
    const dir = join(sparesDir, id)
    await mkdir(sparesDir, { recursive: true, mode: 0o700 })
    await mkdir(dir, { mode: 0o700 })
    await mkdir(disksDir, { recursive: true, mode: 0o700 })
    // Its tap waits on the host: a clone that takes it moves it into its own namespace.
    const nic = config.nic ? { tap: tapName(id), mac: randomMac() } : undefined
    const record = { ...vmRecordFor(id, config, config, config, machineDir, {}, nic), diskPath: join(disksDir, `${id}.qcow2`) }
    const held: Held = { pid: null }
    try {
      await launch(record, dir, machineDir, '', held, {}, () => undefined)
      // The state is loaded ahead too, but not when it carries the RAM: that would fill a private
      // copy of the guest's memory for a clone that may never come.
      if (config.ramInState) return { id, dir, pid: held.pid!, qmp: held.qmp!, uid: record.uid!, loaded: false }
      await migrateFromFile(held.qmp!, filesMonitor(dir, record), machineFiles(machineDir).state, migrateTimeoutMs)
      const spare: Spare = { id, dir, pid: held.pid!, qmp: held.qmp!, uid: record.uid!, loaded: true }
      spare.agent = await warmSpare(spare, config, nic)
      return spare
    } catch (err) {
      await teardown(id, dir, held.pid, held.qmp).catch(() => undefined)
      throw err
    }
  }

  /**
   * Gives a spare to sandbox `id`: its directory and cgroup take the sandbox's name (QEMU keeps
   * its open files and sockets across the rename), its disk and tap go into `record`. False, with
   * the spare gone, `record` as it was and `dir` empty again, when that fails: the caller starts a
   * QEMU itself.
   */
  async function takeOver(spare: Spare, id: string, dir: string, record: VmRecord): Promise<boolean> {
    const nic = record.nic
    record.diskPath = join(disksDir, `${spare.id}.qcow2`)
    record.uid = spare.uid
    // The spare's device sits on the spare's tap, which stays this VM's until its destroy: moved into
    // its namespace, or (without a network) left down on the host, where nothing reaches it. Not
    // deleted while QEMU holds it: QEMU's main loop then spins on the dead descriptor (an idle
    // clone took 85% of a core, and every command in it ran slower).
    if (nic) record.nic = { ...nic, tap: tapName(spare.id) }
    try {
      // `dir` is an empty directory (made to claim the id): a rename replaces it.
      renameSync(spare.dir, dir)
      await vmCgroup(spare.id).rename(id)
      await writeVmRecord(vmFiles(dir).record, record)
      return true
    } catch (err) {
      delete record.diskPath
      delete record.uid
      if (nic) record.nic = nic
      log.warn({ err, spare: spare.id, sandboxId: id }, 'taking over a spare QEMU failed; starting one')
      spare.agent?.close()
      await teardown(spare.id, spare.dir, spare.pid, spare.qmp).catch(() => undefined)
      await rm(dir, { recursive: true, force: true })
      await rm(join(disksDir, `${spare.id}.qcow2`), { force: true })
      // The cgroup may have taken the sandbox's name already, and the record gone with the rename:
      // its processes are ended under either name, and its uid given back here once none is left.
      const emptied = (await vmCgroup(id).killAll()) && (await vmCgroup(spare.id).killAll())
      if ((await vmCgroup(id).remove()) && emptied) await (await jail).release(spare.uid)
      await mkdir(dir, { mode: 0o700 })
      return false
    }
  }

  const spares = createSparePool({
    perMachine: options.sparesPerMachine ?? 2,
    maxMachines: options.spareMachines ?? 4,
    start: startSpare,
    discard: (spare) => {
      spare.agent?.close()
      return teardown(spare.id, spare.dir, spare.pid, spare.qmp)
    },
    logger: log,
  })

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
    const record = vmRecordFor(spec.id, spec, guest, config, machine?.dir ?? null, spec.env, nic)
    // A clone's hostname is the machine's on the kernel command line; its own comes with its identity.
    if (!config) record.hostname = hostname
    const held: Held = { pid: null }
    try {
      const spare = machine ? spares.take(machine.dir) : null
      let loaded = false
      let warmAgent: GuestAgent | undefined
      if (spare && (await takeOver(spare, spec.id, dir, record))) {
        held.pid = spare.pid
        held.qmp = spare.qmp
        loaded = spare.loaded
        warmAgent = spare.agent
        mark('spare')
      } else {
        const ip = !machine && net.mode === 'netns' ? { address: net.address, gateway: net.gateway } : undefined
        const root = machine ? '' : (guest as GuestArtifacts).rootImage
        const rootImage = root && spec.diskMiB !== undefined ? await rootImageOf(root, spec.diskMiB) : root
        await launch(record, dir, machine?.dir ?? null, rootImage, held, call, mark, ip)
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
          await migrateFromFile(qmp, filesMonitor(dir, record), machineFiles(machine.dir).state, migrateTimeoutMs)
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
      if (machine) void spares.fill(machine.dir)
      return { id: spec.id, status: 'running', pid }
    } catch (err) {
      await teardown(spec.id, dir, held.pid, held.qmp).catch(() => undefined)
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
      // Its own directory only when empty: another backend of this process may have spares there.
      await rmdir(sparesDir).catch(() => undefined)
    },

    async prestart(machine: MachineImage) {
      await cloneChecks({ memoryMiB: machine.memoryMiB, cpus: machine.cpus }, machine)
      await spares.fill(machine.dir)
    },
    sparesReady: (machineDir: string) => spares.ready(machineDir),
    dropSpares: (machineDir: string) => spares.drop(machineDir),

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
      const vm = await vmOf(id)
      await mkdir(dirname(dir), { recursive: true })
      try {
        await mkdir(dir, { mode: 0o755 })
      } catch {
        throw new SandstormError('already_exists', `expected a new directory for the saved machine, but ${dir} exists`, { expose: false })
      }
      const out = machineFiles(dir)
      const startedAt = Date.now()
      let stopped = false
      let stoppedAt = 0
      let pausedMs = 0
      try {
        // Clones must never wait for entropy: save only once the guest's CRNG is seeded.
        if (!vm.paused) {
          // The helpers go into the guest's tmpfs, so that every clone finds them in RAM.
          for (const [path, bytes] of [[guestReseedPath, reseedHelper()], [guestIdentityPath, identityHelper()]] as const) {
            const handle = await vm.agent.open(path, 'w')
            await vm.agent.write(handle, bytes).finally(() => vm.agent.closeFile(handle))
          }
          const crng = await vm.agent.run(guestBusybox, ['sh', '-c', 'chmod 755 "$0" "$1" && head -c 1 /dev/random >/dev/null', guestReseedPath, guestIdentityPath])
          if (crng.exitCode !== 0) throw new SandstormError('internal', `preparing the guest for a save failed: ${crng.stderr.toString().trim()}`)
          await vm.qmp.call('stop')
          stopped = true
          stoppedAt = Date.now()
          if (!vm.record.identityHelper) {
            vm.record.identityHelper = true
            await writeVmRecord(vmFiles(dirOf(id)).record, vm.record)
          }
        }
        // Stopped, the guest's RAM and disk hold still: device state, RAM and disk are one moment.
        await migrateToFile(vm.qmp, filesMonitor(dirOf(id), vm.record), out.state, migrateTimeoutMs)
        if (vm.record.memShared) {
          await execa('cp', ['--sparse=always', vm.record.memPath, out.memory])
        } else {
          // A clone's RAM is a private mapping, so it went into the state stream; the file only gives it room.
          await execa('truncate', ['-s', `${vm.record.memoryMiB}M`, out.memory])
        }
        await execa('cp', ['--sparse=always', '--reflink=auto', diskOf(dirOf(id), vm.record), out.disk])
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
        identityHelper: vm.record.identityHelper === true,
        nic: vm.record.nic !== undefined,
        ...(vm.record.diskMiB !== undefined ? { diskMiB: vm.record.diskMiB } : {}),
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
      const disk = await stat(diskOf(dirOf(id), vm.record)).catch(() => null)
      return { ...usage, disk: { usedBytes: (disk?.blocks ?? 0) * 512, limitBytes: vm.record.diskMiB * 1024 * 1024 } }
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
