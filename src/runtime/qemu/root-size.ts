/**
 * A VM's disk quota is the size of its root disk: the guest gets ENOSPC from its own filesystem
 * when it is full, and its qcow2 overlay can grow to at most that size on the host. Each size is a
 * copy of the guest's root image resized on the host (e2fsck, resize2fs), made once and cached
 * beside it: `root.ext4` -> `root-<MiB>M.ext4`. These are images the host built, never a
 * sandbox's disk.
 */
import { existsSync } from 'node:fs'
import { rename, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { complaintOf, endError, runOrThrow, runProcess, SandstormError } from '../../shared/index.js'

/** Room left above what the guest root holds, so that a sandbox can write at least this much. */
const minFreeMiB = 64

const making = new Map<string, Promise<string>>()

/** The root image of `diskMiB` for the guest whose root image is `base`; made on first use. */
export function rootImageOf(base: string, diskMiB: number): Promise<string> {
  const out = join(dirname(base), `root-${diskMiB}M.ext4`)
  let p = making.get(out)
  if (!p) {
    p = make(base, out, diskMiB)
    making.set(out, p)
    p.catch(() => making.delete(out))
  }
  return p
}

async function make(base: string, out: string, diskMiB: number): Promise<string> {
  if ((await stat(base)).size === diskMiB * 1024 * 1024) return base
  if (existsSync(out)) return out
  const tmp = `${out}.${process.pid}.tmp`
  try {
    await runOrThrow('cp', ['--sparse=always', base, tmp], `copying the guest root for a ${diskMiB} MiB disk`)
    // resize2fs wants a freshly checked filesystem; exit 1 is "errors corrected".
    const fsck = await runProcess('e2fsck', ['-f', '-y', tmp])
    if (fsck.exitCode !== 0 && fsck.exitCode !== 1) throw endError(fsck, `checking the guest root for a ${diskMiB} MiB disk`)!
    const needMiB = await minimumMiB(tmp)
    if (diskMiB < needMiB) {
      throw new SandstormError('invalid_argument', `diskMiB: a qemu sandbox's disk holds its whole root, which needs at least ${needMiB} MiB for this template; got ${diskMiB}`)
    }
    await runOrThrow('resize2fs', [tmp, `${diskMiB}M`], `resizing the guest root to ${diskMiB} MiB`)
    await rename(tmp, out)
    return out
  } finally {
    await rm(tmp, { force: true })
  }
}

/** The smallest disk that holds the root with room to write: resize2fs's estimate plus minFreeMiB. */
async function minimumMiB(image: string): Promise<number> {
  const r = await runProcess('resize2fs', ['-P', image])
  const blocks = Number(/minimum size of the filesystem: (\d+)/.exec(r.stdout + r.stderr)?.[1])
  const blockSize = Number(/Block size:\s+(\d+)/.exec((await runProcess('dumpe2fs', ['-h', image])).stdout)?.[1] ?? 4096)
  if (!Number.isFinite(blocks)) throw new SandstormError('internal', `measuring the guest root failed: ${complaintOf(r)}`)
  return Math.ceil((blocks * blockSize) / (1024 * 1024)) + minFreeMiB
}
