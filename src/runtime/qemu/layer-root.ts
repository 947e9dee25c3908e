/**
 * A template's root as one tree, whatever number of layers it has: the layers (topmost first) as a
 * read-only overlay, so that the kernel applies their whiteouts and opaque directories, and what
 * reads it (mkfs.ext4 -d) sees the root a runc sandbox of the template would.
 */
import { lstat, mkdtemp, rmdir } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { SandstormError } from '../../shared/index.js'

/** Characters the overlay's lowerdir option cannot carry unescaped (separators and escapes). */
const unsafeLayerPath = /[:,\\\n]/

/**
 * Runs `fn` on the merged view of `lowerDirs` (topmost first) and unmounts it after, whatever `fn`
 * did. A single directory needs no overlay: `fn` gets it as it is. The mount point is made under
 * `workDir`.
 */
export async function withMergedLayers<T>(lowerDirs: readonly string[], workDir: string, fn: (root: string) => Promise<T>): Promise<T> {
  if (lowerDirs.length === 0) throw new SandstormError('invalid_argument', 'expected a root of at least one layer, got none')
  for (const dir of lowerDirs) {
    if (!dir.startsWith('/') || unsafeLayerPath.test(dir)) {
      throw new SandstormError('invalid_argument', `expected absolute layer paths without ':', ',' or '\\', got "${dir}"`)
    }
  }
  if (lowerDirs.length === 1) return fn(lowerDirs[0]!)
  const mnt = await mkdtemp(join(workDir, 'merged-'))
  try {
    // Lower layers only: the overlay is read-only, and nothing can be written into a layer through it.
    const r = await execa('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${lowerDirs.join(':')}`, mnt], { reject: false, all: true })
    if (r.exitCode !== 0) throw new SandstormError('internal', `expected to mount the ${lowerDirs.length} layers of the root as an overlay, mount said: ${String(r.all).trim()}`)
    try {
      return await fn(mnt)
    } finally {
      const u = await execa('umount', [mnt], { reject: false })
      // A reader that has not let go yet (never expected: fn awaited its processes) must not keep the layers mounted.
      if (u.exitCode !== 0) await execa('umount', ['-l', mnt], { reject: false })
    }
  } finally {
    await rmdir(mnt).catch(() => undefined)
  }
}

/** What is at each of `paths` (relative to `root`): a directory, something else (a symlink is never followed), or nothing. */
export async function entryKinds(root: string, paths: readonly string[]): Promise<Map<string, 'dir' | 'other' | 'none'>> {
  const kinds = new Map<string, 'dir' | 'other' | 'none'>()
  for (const p of paths) {
    const s = await lstat(join(root, p)).catch(() => null)
    kinds.set(p, !s ? 'none' : s.isDirectory() ? 'dir' : 'other')
  }
  return kinds
}
