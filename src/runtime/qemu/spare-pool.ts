/**
 * QEMU processes started ahead for a saved machine: each waits paused (`-S -incoming defer`)
 * with the machine's memory mapped, its disk overlay made, its cgroup set and (unless the machine's
 * RAM is in its state stream) its device state loaded; a loaded one has also run its guest once
 * and stopped it again, its guest agent connected (warmSpare in clone-guest.ts), so that a clone costs
 * `cont` and one exec of its identity (QEMU's own start, ~60–100 ms under load, and under TCG the
 * guest's first run in a fresh QEMU are the largest shares of a clone otherwise). A taken spare is
 * replaced in the background. Spares of a machine die when its directory goes (they would hold its
 * memory file open) and when the backend closes.
 */
import { existsSync, watch, type FSWatcher } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from '../../shared/index.js'
import type { GuestAgent } from './guest-agent.js'
import type { JsonChannel } from './json-channel.js'

/** A started, paused QEMU waiting for a clone of one machine. */
export interface Spare {
  /** Its own name (directory and cgroup) until a clone takes it over. */
  id: string
  dir: string
  pid: number
  qmp: JsonChannel
  /** The uid its QEMU runs as (see vm-jail.ts), which a clone that takes it over keeps. */
  uid: number
  /** The machine's device state is loaded already (the guest waits paused): a clone only continues it. */
  loaded: boolean
  /**
   * The guest ran once already and was stopped again (see warmSpare in clone-guest.ts): its guest
   * agent is connected, and QEMU has translated the guest's exec path, so that a clone's identity
   * step and its first command find them ready. Absent on a spare that never ran.
   */
  agent?: GuestAgent
}

/** Options of a spare pool. */
export interface SparePoolOptions {
  /** Spares kept per machine. @default 2 */
  perMachine?: number
  /** Machines that keep spares at once; the one cloned least recently loses its spares first. @default 4 */
  maxMachines?: number
  /** Starts one spare for a machine directory. */
  start(machineDir: string): Promise<Spare>
  /** Stops a spare and removes what it held. */
  discard(spare: Spare): Promise<void>
  logger: Logger
}

/** Spares per saved machine. */
export interface SparePool {
  /** A ready spare of the machine, taken out of the pool (the caller owns it), or null. */
  take(machineDir: string): Spare | null
  /** Starts spares until the machine has its count; resolves when it has (or a start failed). */
  fill(machineDir: string): Promise<void>
  /** How many spares of the machine are ready. */
  ready(machineDir: string): number
  /** Stops every spare of the machine (it is being removed). */
  drop(machineDir: string): Promise<void>
  /** Stops every spare; later fills start none. */
  close(): Promise<void>
}

interface MachineSpares {
  ready: Spare[]
  filling: Promise<void> | null
  watcher: FSWatcher | null
}

/** A pool of pre-started QEMUs, keyed by machine directory. */
export function createSparePool(options: SparePoolOptions): SparePool {
  const perMachine = options.perMachine ?? 2
  const maxMachines = options.maxMachines ?? 4
  const log = options.logger
  const machines = new Map<string, MachineSpares>()
  const discarding = new Set<Promise<void>>()
  let closed = false

  const discard = (spare: Spare) => {
    const p = options.discard(spare).catch((err: unknown) => log.warn({ err, spare: spare.id }, 'discarding a spare QEMU failed'))
    discarding.add(p)
    void p.finally(() => discarding.delete(p))
    return p
  }

  function entry(machineDir: string): MachineSpares {
    let m = machines.get(machineDir)
    if (!m) {
      m = { ready: [], filling: null, watcher: null }
      machines.set(machineDir, m)
      try {
        // The machine's files going (its directory removed) ends its spares: they map its memory.
        m.watcher = watch(machineDir, { persistent: false }, () => {
          if (!existsSync(join(machineDir, 'config.json'))) void pool.drop(machineDir)
        })
        m.watcher.on('error', () => void pool.drop(machineDir))
      } catch {
        m.watcher = null
      }
    }
    return m
  }

  async function fillLoop(machineDir: string, m: MachineSpares) {
    // One at a time: spares are started beside clones that are running, on few cores.
    while (!closed && machines.get(machineDir) === m && m.ready.length < perMachine) {
      let spare: Spare
      try {
        spare = await options.start(machineDir)
      } catch (err) {
        log.warn({ err, machineDir }, 'starting a spare QEMU failed')
        return
      }
      if (closed || machines.get(machineDir) !== m || !existsSync(join(machineDir, 'config.json'))) {
        await discard(spare)
        return
      }
      m.ready.push(spare)
    }
  }

  const pool: SparePool = {
    take(machineDir) {
      const m = machines.get(machineDir)
      if (!m) return null
      // Most recently cloned last: the map's order is the order machines lose their spares in.
      machines.delete(machineDir)
      machines.set(machineDir, m)
      return m.ready.shift() ?? null
    },
    fill(machineDir) {
      if (closed || perMachine <= 0 || !existsSync(join(machineDir, 'config.json'))) return Promise.resolve()
      if (!machines.has(machineDir) && machines.size >= maxMachines) {
        const [oldest] = machines.keys()
        if (oldest !== undefined) void pool.drop(oldest)
      }
      const m = entry(machineDir)
      m.filling ??= fillLoop(machineDir, m).finally(() => {
        m.filling = null
      })
      return m.filling
    },
    ready(machineDir) {
      return machines.get(machineDir)?.ready.length ?? 0
    },
    async drop(machineDir) {
      const m = machines.get(machineDir)
      if (!m) return
      machines.delete(machineDir)
      m.watcher?.close()
      await Promise.all(m.ready.splice(0).map(discard))
      // A spare still starting is discarded by its fill loop, which sees the machine gone.
      await m.filling
    },
    async close() {
      closed = true
      // Killed now, not after an await: a caller that does not wait for close leaves no QEMU running.
      for (const m of machines.values()) {
        for (const spare of m.ready) {
          // Never pid 0, -1 or 1: kill(2) reads those as a process group, every process, or init.
          if (!(spare.pid > 1)) continue
          try {
            process.kill(spare.pid, 'SIGKILL')
          } catch {
            // already gone
          }
        }
      }
      await Promise.all([...machines.keys()].map((d) => pool.drop(d)))
      await Promise.all([...discarding])
    },
  }
  return pool
}
