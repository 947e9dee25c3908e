/** A btrfs filesystem in a loop file, made and removed by a test. */
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { unmount } from '../../src/storage/index.js'

/** A mounted btrfs loop filesystem. */
export interface BtrfsLoop {
  mountPoint: string
  /** Unmounts it and removes the loop file. */
  close(): Promise<void>
}

/** Why btrfs cannot be used here, or null. */
export async function btrfsSkipReason(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'btrfs tests need root (loop mounts)'
  const mkfs = await execa('mkfs.btrfs', ['--version'], { reject: false })
  if (mkfs.exitCode !== 0) return 'mkfs.btrfs is missing: run scripts/setup.sh (btrfs-progs)'
  return null
}

/** Makes a `sizeMiB` loop file, formats it btrfs and mounts it under a temp dir. */
export async function makeBtrfsLoop(sizeMiB = 512): Promise<BtrfsLoop> {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-btrfs-'))
  const image = join(dir, 'image')
  const mountPoint = join(dir, 'mnt')
  await mkdir(mountPoint)
  await execa('truncate', ['-s', `${sizeMiB}M`, image])
  await execa('mkfs.btrfs', ['-q', image])
  await execa('mount', ['-o', 'loop', image, mountPoint])
  return {
    mountPoint,
    async close() {
      await unmount(mountPoint)
      await rm(dir, { recursive: true, force: true })
    },
  }
}
