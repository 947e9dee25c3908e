/**
 * Which process a VM's QEMU is. QEMU writes its pid to `qemu.pid`; a pid alone does not name a
 * process for long: once that QEMU is gone (a crash, a host reboot: a VM's directory outlives
 * both) the pid may be any other process's, and a destroy or a sweep would SIGKILL it. So the
 * backend writes beside it, right after QEMU starts, the boot it ran in and its start time.
 */
import { readFileSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
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
  await writeFile(identityFile, identity + '\n', { mode: 0o600 })
  return pid
}

/**
 * The pid of the VM's QEMU while that same QEMU runs, else 0. A VM started by a version without
 * identity files is taken as its QEMU while the process's name says QEMU.
 */
export async function runningQemuPid(pidFile: string, identityFile: string): Promise<number> {
  const pid = await readPidFile(pidFile)
  return pid > 1 && (await isQemuOf(pid, identityFile)) ? pid : 0
}

/**
 * Whether `pid` is still the QEMU that `identityFile` names; with `dying`, also while it is a
 * zombie (killed, its pid not yet free: a teardown waits for that).
 */
export async function isQemuOf(pid: number, identityFile: string, dying = false): Promise<boolean> {
  const recorded = await readFile(identityFile, 'utf8').catch(() => null)
  if (recorded !== null) return recorded.trim() === identityOf(pid, dying)
  const name = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')
  return identityOf(pid, dying) !== null && name.startsWith('qemu-system')
}

async function readPidFile(path: string): Promise<number> {
  const pid = Number((await readFile(path, 'utf8').catch(() => '0')).trim())
  return Number.isSafeInteger(pid) && pid > 0 ? pid : 0
}
