/**
 * The cgroup (v1) a VM's QEMU process runs in, beside runc sandboxes' under `/sandstorm/<id>`:
 * memory = guest RAM plus QEMU's own overhead, a cpu quota of `cpus` cores, a thread cap.
 * The guest cannot use more RAM than it was given, so the host limit only catches QEMU itself;
 * a guest that runs out of memory meets its own kernel's OOM killer inside.
 */
import { renameSync } from 'node:fs'
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

const root = '/sys/fs/cgroup'
const controllers = ['memory', 'cpu', 'cpuacct', 'pids'] as const

/** QEMU threads: main, RCU, one per vCPU, and a block I/O pool of up to 64 workers. */
const qemuPidsMax = 128

/** Limits of one VM's cgroup. */
export interface VmLimits {
  memoryMiB: number
  cpus: number
  /** QEMU's own memory beside the guest's (device models, TCG code cache). */
  overheadMiB: number
}

/** One VM's cgroup. */
export interface VmCgroup {
  /** The cgroup.procs files a starter writes its own pid into before exec'ing QEMU. */
  readonly procsFiles: string[]
  create(limits: VmLimits): Promise<void>
  usage(): Promise<{ memoryBytes: number; cpuNanos: number; pids: number }>
  /** Gives the cgroup another VM's name (a pre-started QEMU taken by a sandbox); its processes stay in it. */
  rename(toId: string): Promise<void>
  /**
   * SIGKILLs every process in the cgroup until none is left (up to about 2 s): QEMU and whatever it
   * started, whichever pid its pid file names. True when the cgroup is empty (or gone).
   */
  killAll(): Promise<boolean>
  /** Removes the cgroup once its processes are gone; safe to call twice. False when it is still busy. */
  remove(): Promise<boolean>
}

/** The cgroup of VM `id` (a sandbox id). */
export function vmCgroup(id: string): VmCgroup {
  const dirs = controllers.map((c) => join(root, c, 'sandstorm', id))
  const dirOf = (c: (typeof controllers)[number]) => join(root, c, 'sandstorm', id)
  return {
    procsFiles: dirs.map((d) => join(d, 'cgroup.procs')),
    async create(limits) {
      for (const d of dirs) await mkdir(d, { recursive: true })
      const memoryBytes = (limits.memoryMiB + limits.overheadMiB) * 1024 * 1024
      await writeFile(join(dirOf('memory'), 'memory.limit_in_bytes'), `${memoryBytes}`)
      await writeFile(join(dirOf('cpu'), 'cpu.cfs_period_us'), '100000')
      await writeFile(join(dirOf('cpu'), 'cpu.cfs_quota_us'), `${Math.round(limits.cpus * 100000)}`)
      await writeFile(join(dirOf('pids'), 'pids.max'), `${qemuPidsMax}`)
    },
    async usage() {
      const read = (c: (typeof controllers)[number], file: string) => readFile(join(dirOf(c), file), 'utf8').then(Number, () => 0)
      const [memoryBytes, cpuNanos, pids] = await Promise.all([
        read('memory', 'memory.usage_in_bytes'),
        read('cpuacct', 'cpuacct.usage'),
        read('pids', 'pids.current'),
      ])
      return { memoryBytes, cpuNanos, pids }
    },
    async rename(toId) {
      // cgroup v1 renames a group in place, within its parent: no process moves. Synchronous: a
      // clone from a spare waits for these, and each took a trip through libuv's pool otherwise.
      for (const c of controllers) renameSync(dirOf(c), join(root, c, 'sandstorm', toId))
    },
    async killAll() {
      // Every process of the VM is in each of its controllers: the pids one lists them all.
      const procs = join(dirOf('pids'), 'cgroup.procs')
      for (let i = 0; i < 400; i++) {
        const text = await readFile(procs, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? '' : Promise.reject(err)))
        const pids = text.split('\n').filter(Boolean).map(Number).filter((pid) => Number.isSafeInteger(pid) && pid > 1)
        if (pids.length === 0) return true
        for (const pid of pids) {
          try {
            process.kill(pid, 'SIGKILL')
          } catch {
            // gone between the read and the signal
          }
        }
        await sleep(5)
      }
      return false
    },
    async remove() {
      for (const d of dirs) {
        // A process that just died may linger in the cgroup for a moment.
        let gone = false
        for (let i = 0; i < 200 && !gone; i++) {
          try {
            await rmdir(d)
            gone = true
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code
            if (code === 'ENOENT') gone = true
            else if (code !== 'EBUSY') throw err
            else await sleep(5)
          }
        }
        if (!gone) return false
      }
      return true
    },
  }
}
