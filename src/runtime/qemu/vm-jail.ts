/**
 * What a VM's QEMU runs as once it has opened its files: a uid and gid of its own, no
 * capabilities, an empty root. The guest drives QEMU's device models, so a guest that breaks
 * out of them holds QEMU's process; jailed, that process cannot open a host file, signal or trace
 * another VM's QEMU, or start a program (its seccomp filter denies spawning). What it needs later,
 * a machine state file to save or to load, the agent opens and hands over (native/qmp-fd.c).
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { chmod, mkdir, open, readdir, rm } from 'node:fs/promises'
import { randomInt } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { SandstormError } from '../../shared/index.js'

/** The uids (each also its gid) of VMs: no other user of the host should hold one. */
export const vmUidRange = { first: 2_000_000_000, count: 1 << 24 } as const

/** Run on the host only: hands a file to a QEMU monitor and runs a command with it (native/qmp-fd.c). */
const qmpFdHelper = fileURLToPath(new URL('../../../native/qmp-fd', import.meta.url))
/** The longest the helper may take; its own waits are bounded at 10 s each. */
const helperLimitMs = 35_000

/** A backend's jail: the empty root every QEMU is shut in, and the register of the uids its VMs hold. */
export interface VmJail {
  /** The empty directory QEMU chroots into. */
  root: string
  /** QEMU's arguments that jail it as `uid`, in the words of the QEMU installed. */
  args(uid: number): string[]
  /** A uid no other VM on this host holds, claimed until `release`. */
  claim(): Promise<number>
  /** Gives a uid back (a VM's teardown); one not held is fine. */
  release(uid: number): Promise<void>
}

/**
 * The jail under `dir` (`<dir>/jail`, `<dir>/uids`): a uid is claimed by making `<dir>/uids/<uid>`,
 * so claims survive the agent. `qemuHelp` is what the QEMU installed prints for `-help`.
 */
export async function createVmJail(dir: string, qemuHelp = ''): Promise<VmJail> {
  const root = join(dir, 'jail')
  const uids = join(dir, 'uids')
  await mkdir(root, { recursive: true })
  // Searchable, nothing more: QEMU changes into it and finds nothing there, nor may it put anything there.
  await chmod(root, 0o111)
  if ((await readdir(root)).length > 0) throw new SandstormError('internal', `the QEMU jail ${root} is not empty: expected an empty directory`)
  await mkdir(uids, { recursive: true, mode: 0o700 })
  return {
    root,
    args: (uid) => jailArgs(uid, root, qemuHelp),
    async claim() {
      for (let tries = 0; tries < 64; tries++) {
        const uid = vmUidRange.first + randomInt(vmUidRange.count)
        try {
          await mkdir(join(uids, String(uid)))
          return uid
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
        }
      }
      throw new SandstormError('resource_exhausted', 'no free uid for a VM: 64 random picks were all held')
    },
    async release(uid) {
      await rm(join(uids, String(uid)), { recursive: true, force: true })
    },
  }
}

/**
 * QEMU's arguments that jail it: its uid and gid, and the empty root. `-chroot` and `-runas` (QEMU
 * 7.2, Debian 12's) became `-run-with chroot=` (8.1) and `-run-with user=` (9.1), and the old
 * words were then removed: the help text of the QEMU installed says which it takes.
 */
export function jailArgs(uid: number, root: string, qemuHelp = ''): string[] {
  const takes = (option: string) => new RegExp(`^${option} `, 'm').test(qemuHelp)
  const runWith = qemuHelp.match(/^-run-with .*$/m)?.[0] ?? ''
  const args: string[] = []
  const combined: string[] = []
  if (runWith.includes('user=') && !takes('-runas')) combined.push(`user=${uid}:${uid}`)
  else args.push('-runas', `${uid}:${uid}`)
  if (runWith.includes('chroot=') && !takes('-chroot')) combined.push(`chroot=${root}`)
  else args.push('-chroot', root)
  return combined.length > 0 ? [...args, '-run-with', combined.join(',')] : args
}

/**
 * Opens `file` (for reading, or created and truncated for writing), hands it to QEMU on the
 * monitor at `socket` as the fd `name`, and runs `command` (QMP JSON that uses `fd:<name>`) on
 * that monitor. Resolves with the command's answer; QEMU's error fails it.
 */
export async function withFileOnMonitor(socket: string, file: string, mode: 'read' | 'write', name: string, command: object): Promise<void> {
  const handle = await open(file, mode === 'read' ? 'r' : 'w', 0o600)
  try {
    const child = spawn(qmpFdHelper, [socket, name, JSON.stringify(command)], { stdio: ['ignore', 'ignore', 'pipe', handle.fd], timeout: helperLimitMs, killSignal: 'SIGKILL' })
    let complaint = ''
    child.stderr!.setEncoding('utf8').on('data', (text: string) => (complaint += text.slice(0, 4096)))
    const [code] = (await once(child, 'close')) as [number | null]
    if (code !== 0) throw new SandstormError('internal', `handing ${file} to QEMU failed: ${complaint.trim().split('\n').pop() || `exit ${code}`}`)
  } finally {
    await handle.close()
  }
}
