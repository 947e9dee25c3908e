import { mkdir, readFile } from 'node:fs/promises'
import { SandstormError } from '../../shared/index.js'
import { complaintOf, runTool } from '../run-tool.js'

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
  const result = await runTool('mount', ['-t', 'overlay', 'overlay', '-o', `nodev,nosuid,${data}`, options.target])
  if (result.exitCode !== 0) {
    throw new SandstormError('internal', `mounting the sandbox root failed: ${complaintOf(result)}`)
  }
}

/** The overlay mount's data (`lowerdir=…,upperdir=…,workdir=…`), for a mount made elsewhere (runc's). */
export function overlayMountData(options: Omit<OverlayOptions, 'target'>): string {
  if (options.lowerDirs.length === 0) throw new SandstormError('invalid_argument', 'an overlay needs at least one lower layer')
  for (const dir of [...options.lowerDirs, options.upperDir, options.workDir]) {
    if (dir.includes(',') || dir.includes(':')) {
      throw new SandstormError('invalid_argument', `layer path "${dir}" must not contain "," or ":"`)
    }
  }
  return `lowerdir=${options.lowerDirs.join(':')},upperdir=${options.upperDir},workdir=${options.workDir}`
}

/** Unmounts a mount point if it is mounted; a busy mount is detached lazily. Safe to call twice. */
export async function unmount(target: string): Promise<void> {
  if (!(await isMounted(target))) return
  const result = await runTool('umount', [target])
  if (result.exitCode === 0) return
  const lazy = await runTool('umount', ['-l', target])
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
