import { mkdir, readFile } from 'node:fs/promises'
import { release } from 'node:os'
import { complaintOf, runOrThrow, runProcess, SandstormError } from '../../shared/index.js'

/** Where an overlay root is mounted and what it stacks. */
export interface OverlayOptions {
  /** Read-only layers, topmost first. */
  lowerDirs: string[]
  /** The sandbox's own writable layer. */
  upperDir: string
  /** Overlayfs scratch directory on the same filesystem as upperDir. */
  workDir: string
  /** Mount point. */
  target: string
}

/**
 * Mounts an overlay root. `nodev` and `nosuid` hold on the host side: the upper layer is written
 * by the sandbox, so nothing in it may act as a device or gain privileges for a host process.
 */
export async function mountOverlay(options: OverlayOptions): Promise<void> {
  const data = overlayMountData(options)
  await Promise.all([options.upperDir, options.workDir, options.target].map((d) => mkdir(d, { recursive: true })))
  await runOrThrow('mount', ['-t', 'overlay', 'overlay', '-o', `nodev,nosuid,${data}`, options.target], 'mounting the sandbox root')
}

/**
 * Whether this kernel's overlayfs takes `volatile` (Linux 5.10+): no sync call reaches the
 * writable layer, neither the fsync of each copy-up (a file of a lower layer written for the first
 * time) nor a sandbox's own fsync and syncfs. On a quota disk (a loop device) each of those
 * flushes the disk image to the host's disk: about 2 ms for each file a sandbox first changes.
 *
 * A sandbox's writable layer never outlives the host: after a crash none of its processes run and
 * the agent removes the dir; a snapshot is a copy, read through the page cache. Overlayfs refuses
 * a volatile upper once unmounted (it leaves `work/incompat/volatile`), and every mount here gets
 * fresh upper and work dirs: a create, a restore's new layer, a btrfs child (its work dir emptied).
 */
export const overlayVolatile: boolean = kernelAtLeast(release(), 5, 10)

/** Is `kernelRelease` (uname -r: `6.1.0-18-amd64`) at least major.minor? */
export function kernelAtLeast(kernelRelease: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(kernelRelease)
  if (!m) return false
  const [a, b] = [Number(m[1]), Number(m[2])]
  return a > major || (a === major && b >= minor)
}

/** The overlay mount's data (`lowerdir=…,upperdir=…,workdir=…[,volatile]`), for a mount made elsewhere (runc's). */
export function overlayMountData(options: Omit<OverlayOptions, 'target'>): string {
  if (options.lowerDirs.length === 0) throw new SandstormError('invalid_argument', 'an overlay needs at least one lower layer')
  for (const dir of [...options.lowerDirs, options.upperDir, options.workDir]) {
    if (dir.includes(',') || dir.includes(':')) {
      throw new SandstormError('invalid_argument', `layer path "${dir}" must not contain "," or ":"`)
    }
  }
  return `lowerdir=${options.lowerDirs.join(':')},upperdir=${options.upperDir},workdir=${options.workDir}${overlayVolatile ? ',volatile' : ''}`
}

/** Unmounts a mount point if it is mounted; a busy mount is detached lazily. Safe to call twice. */
export async function unmount(target: string): Promise<void> {
  if (!(await isMounted(target))) return
  const result = await runProcess('umount', [target])
  if (result.exitCode === 0) return
  const lazy = await runProcess('umount', ['-l', target])
  if (lazy.exitCode !== 0 && (await isMounted(target))) {
    throw new SandstormError('internal', `unmounting ${target} failed: ${complaintOf(lazy)}`)
  }
}

/** Is anything mounted exactly at this path (as this process's mount table says)? */
export async function isMounted(target: string): Promise<boolean> {
  const table = await readFile('/proc/self/mountinfo', 'utf8')
  const escaped = target.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`)
  return table.split('\n').some((line) => line.split(' ')[4] === escaped)
}
