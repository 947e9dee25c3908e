/**
 * Which process a VM's QEMU is. QEMU writes its pid to `qemu.pid`; a pid alone does not name a
 * process for long: once that QEMU is gone (a crash, a host reboot: a VM's directory outlives
 * both) the pid may be any other process's, and a destroy or a sweep would SIGKILL it. So the
 * backend writes beside it, right after QEMU starts, the boot it ran in, its start time and the
 * pid itself: QEMU keeps its pid file open for writing, so once it has started, a QEMU the guest
 * took over could write another pid there. Only the first read of it, at the start, is trusted.
 */
import { readFileSync } from 'node:fs'
import { open, readFile, writeFile } from 'node:fs/promises'
import { SandstormError, startTicksOf } from '../../shared/index.js'

const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()

/** What the identity file holds: `<boot id> <start ticks>`; with `dying`, of a zombie too. */
function identityOf(pid: number, dying = false): string | null {
  const ticks = startTicksOf(pid, { zombie: dying })
  return ticks === null ? null : `${bootId} ${ticks}`
}

/** Records the identity of the QEMU that `pidFile` names; fails when that QEMU is gone already. */
export async function recordQemuProcess(pidFile: string, identityFile: string): Promise<number> {
  const pid = await readPidFile(pidFile)
  const identity = pid > 1 ? identityOf(pid) : null
  if (identity === null) throw new SandstormError('internal', 'qemu exited as it started')
  await writeFile(identityFile, `${identity} ${pid}\n`, { mode: 0o600 })
  return pid
}

/** What the identity file holds: the boot and start time, and the pid (absent in files of versions before it was kept there). */
async function readIdentity(identityFile: string): Promise<{ identity: string; pid?: number } | null> {
  const text = await readFile(identityFile, 'utf8').catch(() => null)
  if (text === null) return null
  const [boot = '', ticks = '', pid] = text.trim().split(' ')
  return { identity: `${boot} ${ticks}`, ...(pid !== undefined ? { pid: Number(pid) } : {}) }
}

/**
 * The pid of the VM's QEMU while that same QEMU runs, else 0. A VM started by a version without
 * identity files is taken as its QEMU while the process's name says QEMU.
 */
export async function runningQemuPid(pidFile: string, identityFile: string): Promise<number> {
  const recorded = await readIdentity(identityFile)
  const pid = recorded?.pid ?? (await readPidFile(pidFile))
  return pid > 1 && (await matches(pid, recorded, false)) ? pid : 0
}

/**
 * Whether a pid is still the QEMU that `identityFile` names; with `dying`, also while it is a
 * zombie (killed, its pid not yet free: a teardown waits for that). The file is read once, here:
 * a teardown asks again every few milliseconds until the pid is free.
 */
export async function qemuMatcher(identityFile: string): Promise<(pid: number, dying?: boolean) => Promise<boolean>> {
  const recorded = await readIdentity(identityFile)
  return (pid, dying = false) => matches(pid, recorded, dying)
}

/** Whether `pid` is the QEMU `recorded` names (no record: a process named as QEMU). */
async function matches(pid: number, recorded: { identity: string; pid?: number } | null, dying: boolean): Promise<boolean> {
  if (recorded !== null) return (recorded.pid === undefined || recorded.pid === pid) && recorded.identity === identityOf(pid, dying)
  const name = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')
  return identityOf(pid, dying) !== null && name.startsWith('qemu-system')
}

/** The pid in QEMU's pid file: its first 32 bytes (QEMU holds the file open, and may have made it any size). */
async function readPidFile(path: string): Promise<number> {
  const handle = await open(path, 'r').catch(() => null)
  if (!handle) return 0
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(32), 0, 32, 0)
    const pid = Number(buffer.subarray(0, bytesRead).toString('utf8').trim())
    return Number.isSafeInteger(pid) && pid > 0 ? pid : 0
  } finally {
    await handle.close()
  }
}
