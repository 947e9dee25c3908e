/**
 * The backend's spare QEMUs (see spare-pool.ts): how one is started and warmed for a saved
 * machine, how a clone takes one over, and how spares of an agent process that is gone are found
 * and stopped.
 */
import { renameSync } from 'node:fs'
import { mkdir, readdir, rm, rmdir } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { idPattern, isAlive, newId, SandstormError, type Logger } from '../../shared/index.js'
import { warmSpare } from './clone-guest.js'
import { machineFiles, readMachineConfig } from './machine-image.js'
import { vmFiles } from './qemu-args.js'
import { migrateFromFile, migrateTimeoutMs } from './qmp.js'
import { createSparePool, type Spare, type SparePool } from './spare-pool.js'
import { vmCgroup } from './vm-cgroup.js'
import type { Held, VmHost } from './vm-host.js'
import { randomMac, tapName } from './vm-network.js'
import { writeVmRecord, type VmRecord } from './vm-record.js'

/** Options of a backend's spares. */
export interface VmSparesOptions {
  /** The backend's directory: spares live under `<dir>/spares/<pid of their agent process>`. */
  dir: string
  accel: 'kvm' | 'tcg'
  host: VmHost
  /** Spares kept per machine. @default 2 */
  perMachine?: number
  /** Machines that keep spares at once. @default 4 */
  maxMachines?: number
  log: Logger
}

/** The spare pool, and how a clone takes a spare over. */
export interface VmSpares {
  pool: SparePool
  /**
   * Gives a spare to sandbox `id`: its directory and cgroup take the sandbox's name (QEMU keeps
   * its open files and sockets across the rename), its disk and tap go into `record`. False, with
   * the spare gone, `record` as it was and `dir` empty again, when that fails: the caller starts a
   * QEMU itself.
   */
  takeOver(spare: Spare, id: string, dir: string, record: VmRecord): Promise<boolean>
  /** Stops the pool's spares, and removes this process's spare directory when it is empty. */
  close(): Promise<void>
}

/** The spares of one backend. */
export function createVmSpares(options: VmSparesOptions): VmSpares {
  const { host, accel, log } = options
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
        await host.teardown(id, dir, (await host.readPid(dir)) || null).catch((err: unknown) => log.warn({ err, dir }, 'removing a stale spare QEMU failed'))
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
    await mkdir(host.disksDir, { recursive: true, mode: 0o700 })
    // Its tap waits on the host: a clone that takes it moves it into its own namespace.
    const nic = config.nic ? { tap: tapName(id), mac: randomMac() } : undefined
    const record = { ...host.recordFor(id, config, config, config, machineDir, {}, nic), diskPath: join(host.disksDir, `${id}.qcow2`) }
    const held: Held = { pid: null }
    try {
      await host.launch(record, dir, machineDir, '', held, {}, () => undefined)
      // The state is loaded ahead too, but not when it carries the RAM: that would fill a private
      // copy of the guest's memory for a clone that may never come.
      if (config.ramInState) return { id, dir, pid: held.pid!, qmp: held.qmp!, uid: record.uid!, loaded: false }
      await migrateFromFile(held.qmp!, host.filesMonitor(dir, record), machineFiles(machineDir).state, migrateTimeoutMs)
      const spare: Spare = { id, dir, pid: held.pid!, qmp: held.qmp!, uid: record.uid!, loaded: true }
      spare.agent = await warmSpare(spare, config, nic)
      return spare
    } catch (err) {
      await host.teardown(id, dir, held.pid, held.qmp).catch(() => undefined)
      throw err
    }
  }

  async function takeOver(spare: Spare, id: string, dir: string, record: VmRecord): Promise<boolean> {
    const nic = record.nic
    record.diskPath = join(host.disksDir, `${spare.id}.qcow2`)
    record.uid = spare.uid
    // The spare's device sits on the spare's tap, which stays this VM's until its destroy: moved into
    // its namespace, or (without a network) left down on the host, where nothing reaches it. Not
    // deleted while QEMU holds it: QEMU's main loop then spins on the dead descriptor (an idle
    // clone took 85% of a core, and every command in it ran slower).
    if (nic) record.nic = { ...nic, tap: tapName(spare.id) }
    let renamed = false
    try {
      // `dir` is an empty directory (made to claim the id): a rename replaces it.
      renameSync(spare.dir, dir)
      renamed = true
      await vmCgroup(spare.id).rename(id)
      await writeVmRecord(vmFiles(dir).record, record)
      return true
    } catch (err) {
      delete record.diskPath
      delete record.uid
      if (nic) record.nic = nic
      log.warn({ err, spare: spare.id, sandboxId: id }, 'taking over a spare QEMU failed; starting one')
      spare.agent?.close()
      // One teardown, wherever the take-over stopped: the spare's record (its disk, tap and uid) is
      // in whichever directory holds it now, and its cgroup may have the sandbox's name already.
      await host.teardown(spare.id, renamed ? dir : spare.dir, spare.pid, spare.qmp, { cgroups: [spare.id, id], uid: spare.uid }).catch(() => undefined)
      await rm(dir, { recursive: true, force: true })
      await mkdir(dir, { mode: 0o700 })
      return false
    }
  }

  const pool = createSparePool({
    perMachine: options.perMachine ?? 2,
    maxMachines: options.maxMachines ?? 4,
    start: startSpare,
    discard: (spare) => {
      spare.agent?.close()
      return host.teardown(spare.id, spare.dir, spare.pid, spare.qmp)
    },
    logger: log,
  })

  return {
    pool,
    takeOver,
    async close() {
      await pool.close()
      // Its own directory only when empty: another backend of this process may have spares there.
      await rmdir(sparesDir).catch(() => undefined)
    },
  }
}
