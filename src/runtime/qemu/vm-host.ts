/**
 * The host's side of one VM: its record, its disk, cgroup, tap and jailed QEMU at the start, and
 * all of them again at the end. The backend, its spares and its saves share these.
 */
import { chmod, copyFile, mkdir, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { runOrThrow, type CallOptions, type Logger } from '../../shared/index.js'
import type { GuestAgent } from './guest-agent.js'
import { connectJsonChannel, qmpMaxLine, type JsonChannel } from './json-channel.js'
import { machineFiles, qcow2BackingFile, type MachineConfig } from './machine-image.js'
import { ignoreSharedRam } from './qmp.js'
import { qemuArgs, qemuOverheadMiB, vmFiles, type VmNic } from './qemu-args.js'
import { vmCgroup } from './vm-cgroup.js'
import type { VmJail } from './vm-jail.js'
import { createTap, removeTap } from './vm-network.js'
import { qemuMatcher, recordQemuProcess, runningQemuPid } from './vm-process.js'
import { writeVmRecord, readVmRecord, type VmRecord } from './vm-record.js'

/** The PATH of a guest's commands. */
export const guestDefaultPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

/** A running VM the backend holds a connection to. */
export interface Vm {
  id: string
  pid: number
  qmp: JsonChannel
  agent: GuestAgent
  record: VmRecord
  paused: boolean
}

/** What a create or a spare has started so far, for the teardown of one that fails. */
export interface Held {
  pid: number | null
  qmp?: JsonChannel
}

/** Where a backend's VMs live and how their QEMU runs. */
export interface VmHostOptions {
  /** The backend's directory (spares' disks go to `<dir>/disks`). */
  dir: string
  /** Guest RAM files of running VMs. */
  memoryDir: string
  /** The QEMU binary. */
  binary: string
  accel: 'kvm' | 'tcg'
  /** The uid register and the empty root each QEMU is jailed in. */
  jail: Promise<VmJail>
  log: Logger
}

/** The host's side of the backend's VMs. */
export interface VmHost {
  /** Disks of VMs started as spares: a path that stays when the spare's directory becomes a sandbox's. */
  readonly disksDir: string
  /** The pid of the VM's QEMU while that QEMU runs, else 0 (its pid file may outlive it). */
  readPid(dir: string): Promise<number>
  diskOf(dir: string, record: VmRecord): string
  /** The monitor a VM's QEMU takes state files on; null for a QEMU of a version before jails (it opens them itself). */
  filesMonitor(dir: string, record: VmRecord): string | null
  /** A VM's record: a clone repeats its machine's boot files and hostname (its kernel booted with those). */
  recordFor(id: string, size: { memoryMiB: number; cpus: number; diskMiB?: number }, guest: { kernel: string; initramfs: string }, config: MachineConfig | null, machineDir: string | null, env: Record<string, string>, nic: VmNic | undefined): VmRecord
  /** Disk, record, cgroup, QEMU started (paused, for a clone) and QMP ready; what it started goes into `held`. */
  launch(record: VmRecord, dir: string, machineDir: string | null, rootImage: string, held: Held, call: CallOptions, mark: (phase: string) => void, ip?: { address: string; gateway: string }): Promise<void>
  /**
   * Stops QEMU and removes everything the VM held: its dir, its own RAM file, its cgroup, its uid.
   * A spare caught in its take-over may have its cgroup under both names, and its record gone
   * with its directory: `also` names them.
   */
  teardown(id: string, dir: string, pid: number | null, qmp?: JsonChannel, also?: { cgroups: string[]; uid: number }): Promise<void>
}

/** How long a QEMU just started may take to answer its first QMP command. */
const qmpReadyTimeoutMs = 30_000

/** The host's side of VMs under `options.dir`. */
export function createVmHost(options: VmHostOptions): VmHost {
  const { memoryDir, accel, log } = options
  const disksDir = join(options.dir, 'disks')

  /** Starts QEMU inside the VM's cgroup (the starter joins it, then execs QEMU, which daemonizes). */
  async function startQemu(id: string, dir: string, args: string[], call: CallOptions): Promise<number> {
    const cgroup = vmCgroup(id)
    const script = 'for f in $SANDSTORM_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; exec "$@"'
    await runOrThrow('/bin/sh', ['-c', script, 'sandstorm-qemu', options.binary, ...args], 'starting qemu', { env: { SANDSTORM_CGROUP_PROCS: cgroup.procsFiles.join(' ') }, signal: call.signal })
    return recordQemuProcess(vmFiles(dir).pid, vmFiles(dir).started)
  }

  const host: VmHost = {
    disksDir,
    readPid: (dir) => runningQemuPid(vmFiles(dir).pid, vmFiles(dir).started),
    diskOf: (dir, record) => record.diskPath ?? vmFiles(dir).disk,
    filesMonitor: (dir, record) => (record.uid !== undefined ? vmFiles(dir).qmpFiles : null),

    recordFor(id, size, guest, config, machineDir, env, nic) {
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
        env: [`PATH=${guestDefaultPath}`, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)],
      }
    },

    async launch(record, dir, machineDir, rootImage, held, call, mark, ip) {
      const files = vmFiles(dir)
      const disk = host.diskOf(dir, record)
      const saved = machineDir ? machineFiles(machineDir) : null
      if (saved && (await qcow2BackingFile(saved.overlay)) === saved.disk) {
        await copyFile(saved.overlay, disk)
        await chmod(disk, 0o600)
      } else {
        const backing = saved ? ['-F', 'qcow2', '-b', saved.disk] : ['-F', 'raw', '-b', rootImage]
        await runOrThrow('qemu-img', ['create', '-q', '-f', 'qcow2', ...backing, disk], "making the VM's disk")
      }
      mark('disk')
      await mkdir(memoryDir, { recursive: true, mode: 0o700 })
      const vmJail = await options.jail
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
    },

    async teardown(id, dir, pid, qmp, also) {
      const record = await readVmRecord(vmFiles(dir).record).catch(() => null)
      if (qmp) {
        await qmp.call('quit', undefined, 2000).catch(() => undefined)
        await Promise.race([qmp.closed, sleep(2000)])
        qmp.close()
      }
      // Only a real QEMU pid: kill(2) reads 0, -1 and negatives as groups or every process. And only
      // while it is still this VM's QEMU (running, or killed and not yet reaped): once that is gone,
      // the pid may be anyone's. Its pid is waited for until free, its cgroup empty.
      const isOurs = await qemuMatcher(vmFiles(dir).started)
      if (pid !== null && !(pid > 1 && (await isOurs(pid, true)))) pid = null
      if (pid) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // reaped between the check and the signal
        }
      }
      for (let i = 0; pid && (await isOurs(pid, true)) && i < 400; i++) await sleep(5)
      await rm(dir, { recursive: true, force: true })
      // A tap still on the host (a spare's, or a start that failed before it moved); a moved one went with its namespace.
      if (record?.nic?.tap) await removeTap(record.nic.tap)
      if (record?.diskPath && dirname(record.diskPath) === disksDir) await rm(record.diskPath, { force: true })
      // Only a VM's own RAM file goes; a clone's is the saved machine's, which its owner keeps.
      await rm(join(memoryDir, `${id}.ram`), { force: true })
      if (record?.memShared && dirname(record.memPath) === memoryDir) await rm(record.memPath, { force: true })
      // Whatever else runs in its cgroup goes too: a QEMU the guest took over may have forked, or
      // written another pid into its pid file. Its uid is free only once nothing runs as it.
      let emptied = true
      let removed = true
      for (const name of also?.cgroups ?? [id]) {
        const cgroup = vmCgroup(name)
        emptied = (await cgroup.killAll()) && emptied
        removed = (await cgroup.remove()) && removed
      }
      const uid = record?.uid ?? also?.uid
      if (uid === undefined) return
      if (emptied && removed) await (await options.jail).release(uid)
      else log.error({ sandboxId: id, uid }, 'processes of a VM outlived SIGKILL: its uid stays claimed')
    },
  }
  return host
}
