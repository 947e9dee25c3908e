/**
 * A template's root as one tree, whatever number of layers it has: the layers (topmost first) as a
 * read-only overlay, so that the kernel applies their whiteouts and opaque directories, and what
 * reads it (mkfs.ext4 -d) sees the root a runc sandbox of the template would.
 */
import { lstat, mkdtemp, rm, rmdir, symlink } from 'node:fs/promises'
import { join } from 'node:path'
import { runOrThrow, runProcess, SandstormError } from '../../shared/index.js'

/**
 * Runs `fn` on the merged view of `lowerDirs` (topmost first) and unmounts it after, whatever `fn`
 * did. A single directory needs no overlay: `fn` gets it as it is. The mount point is made under
 * `workDir`.
 */
export async function withMergedLayers<T>(lowerDirs: readonly string[], workDir: string, fn: (root: string) => Promise<T>): Promise<T> {
  if (lowerDirs.length === 0) throw new SandstormError('invalid_argument', 'expected a root of at least one layer, got none')
  for (const dir of lowerDirs) {
    if (!dir.startsWith('/')) throw new SandstormError('invalid_argument', `expected absolute layer paths, got "${dir}"`)
  }
  if (lowerDirs.length === 1) return fn(lowerDirs[0]!)
  const mnt = await mkdtemp(join(workDir, 'merged-'))
  // The mount's options fit in one page: each layer goes by a short relative name (a symlink of
  // ours to it, resolved from the mount's cwd), so that an image of many layers with long paths
  // fits, and no path needs escaping for the option's ':' and ','.
  const names = await mkdtemp(join(workDir, 'layers-'))
  try {
    for (const [i, dir] of lowerDirs.entries()) await symlink(dir, join(names, String(i)))
    const lowerdir = lowerDirs.map((_, i) => String(i)).join(':')
    // Lower layers only: the overlay is read-only, and nothing can be written into a layer through
    // it. A layer a sandbox made may hold device nodes and setuid files: on the host, neither works.
    await runOrThrow('mount', ['-t', 'overlay', 'overlay', '-o', `ro,nodev,nosuid,lowerdir=${lowerdir}`, mnt], `mounting the ${lowerDirs.length} layers of the root as an overlay`, { cwd: names })
    try {
      return await fn(mnt)
    } finally {
      const u = await runProcess('umount', [mnt])
      // A reader that has not let go yet (never expected: fn awaited its processes) must not keep the layers mounted.
      if (u.exitCode !== 0) await runProcess('umount', ['-l', mnt])
    }
  } finally {
    await rmdir(mnt).catch(() => undefined)
    await rm(names, { recursive: true, force: true })
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
