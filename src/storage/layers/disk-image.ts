/**
 * A writable dir with a disk quota on any filesystem: the dir is the mount point of its own ext4
 * image, a sparse file of the quota's size beside it (`<dir>.disk`). A sandbox that writes past
 * it gets ENOSPC from its own filesystem, and the host's free space drops by at most the image's
 * size. The image is mounted with a loop device that the kernel frees on unmount (autoclear).
 *
 * mkfs and mount run in one script of a resident shell: spawned from the agent they cost two
 * forks of it (33 ms beside 21 ms for both in the shell, measured on a 2-core host with a 300 MiB
 * heap). About 600 KiB of the host's disk per image before the sandbox writes anything.
 */
import { existsSync, statfsSync, statSync } from 'node:fs'
import { mkdir, rename, rm, truncate, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { complainsOfFullDisk, diskFullError, SandstormError, type CallOptions } from '../../shared/index.js'
import { isMounted } from '../overlay/overlay.js'
import { createResidentShell, shellQuote, type ResidentShell } from '../../shared/resident-shell.js'

const shell = createResidentShell('disk image')

/** The image file of a writable dir. */
export const diskImageOf = (dir: string): string => `${dir}.disk`

/** How much of its quota a writable dir uses. */
export interface DiskUsage {
  usedBytes: number
  limitBytes: number
}

/**
 * Formats a `diskMiB` image for `dir` and mounts it there (`dir` exists and is empty). On failure
 * nothing is left: no image, no mount, no loop device.
 */
export async function mountDiskImage(dir: string, diskMiB: number, call: CallOptions = {}): Promise<void> {
  if (call.signal?.aborted) throw new SandstormError('canceled', 'making the sandbox disk was canceled')
  await formatAndMount(dir, diskMiB, shell)
}

/**
 * Makes the sparse image of `dir`, formats it and mounts it at `dir`, in `shell` (its commands
 * behind `prefix`, `nice -n 10 ` say). On failure nothing is left: no image, no mount, no loop device.
 */
export async function formatAndMount(dir: string, diskMiB: number, shell: ResidentShell, prefix = ''): Promise<void> {
  const image = diskImageOf(dir)
  try {
    await writeFile(image, '', { mode: 0o600, flag: 'wx' })
    await truncate(image, diskMiB * 1024 * 1024)
    // No reserved blocks (root in the sandbox would get them), inode tables and journal not
    // zeroed ahead: the file stays sparse until the sandbox writes.
    // noinit_itable: no background thread zeroing the inode tables (and filling the image).
    // nobarrier: no cache flush per journal commit, which through the loop device is an fsync of
    // the image on the host's disk (at every commit, and at the unmount of each destroy). The disk
    // never outlives the host: after a crash the agent deletes it, as it does the sandbox.
    const r = await shell.run(
      `${prefix}mkfs.ext4 -q -F -m 0 -E lazy_itable_init=1,lazy_journal_init=1,nodiscard ${shellQuote(image)} && ` +
        `${prefix}mount -t ext4 -o loop,nodev,nosuid,noatime,noinit_itable,nobarrier ${shellQuote(image)} ${shellQuote(dir)}`,
    )
    if (r.code !== 0) throw toolError('making the sandbox disk', r.output.trim())
  } catch (err) {
    await removeDiskImage(dir, shell).catch(() => undefined)
    throw err
  }
}

/**
 * Where a writable dir's image goes to be deleted: `removing/` beside the store's `writable/`, on
 * the same filesystem (a rename), outside the dirs that name sandboxes.
 */
export const removingDirOf = (dir: string): string => join(dirname(dirname(dir)), 'removing')

/** Deletions of images moved out of the way, still running. */
const deletions = new Set<Promise<void>>()

/**
 * Unmounts a writable dir's image (a busy one lazily) and takes it away. Safe to call twice, and
 * on a dir without one. The image is renamed into `removingDirOf(dir)` and deleted after this
 * answers: the unlink of an image that the sandbox wrote to frees its blocks and drops its cached
 * pages, tens of milliseconds that a destroy need not wait for (nothing runs on it, nothing
 * names it). `diskImageDeletions` waits for them; `sweepRemovedDiskImages` removes what a crash cut off.
 */
export async function removeDiskImage(dir: string, within: ResidentShell = shell): Promise<void> {
  // In the resident shell too: a fork of the agent here would stall a create running beside the destroy.
  if (await isMounted(dir)) {
    const r = await within.run(`umount ${shellQuote(dir)} 2>/dev/null || umount -l ${shellQuote(dir)}`)
    if (r.code !== 0 && (await isMounted(dir))) throw new SandstormError('internal', `unmounting a sandbox disk failed: ${r.output.trim()}`)
  }
  const image = diskImageOf(dir)
  const removing = removingDirOf(dir)
  const moved = join(removing, basename(image))
  if (!existsSync(image)) return
  try {
    await mkdir(removing, { recursive: true, mode: 0o700 })
    await rename(image, moved)
  } catch {
    // Not movable (the dir is not a store's writable dir on one filesystem): deleted here and now.
    await rm(image, { force: true })
    return
  }
  const deletion: Promise<void> = rm(moved, { force: true })
    // A failed unlink leaves the file for the next start's sweep.
    .catch(() => undefined)
    .finally(() => deletions.delete(deletion))
  deletions.add(deletion)
}

/** Resolves once every image that removeDiskImage moved away is deleted (shutdown waits on it). */
export async function diskImageDeletions(): Promise<void> {
  while (deletions.size > 0) await Promise.all([...deletions])
}

/** Deletes images that a stop cut off between their move and their deletion, under a store's `removing/`. */
export async function sweepRemovedDiskImages(storeDir: string): Promise<void> {
  await rm(join(storeDir, 'removing'), { recursive: true, force: true })
}

/** What a mounted image holds, or null when `dir` has none mounted. */
export async function diskImageUsage(dir: string): Promise<DiskUsage | null> {
  // A mounted image is a filesystem of its own, so its root's device differs from its parent's.
  // Two stats instead of reading the mount table: this runs for every sandbox every few seconds.
  // Synchronous (microseconds each, on a local filesystem): this is on a snapshot's path, where
  // an async call waits in libuv's pool behind whatever queued there first (a restore's removal of
  // the layer it left), 3 ms at p95 and 11 ms at worst of a 6 ms snapshot.
  try {
    const own = statSync(dir)
    const parent = statSync(dirname(dir))
    if (own.dev === parent.dev) return null
    const s = statfsSync(dir)
    return { usedBytes: (s.blocks - s.bfree) * s.bsize, limitBytes: s.blocks * s.bsize }
  } catch {
    return null
  }
}

function toolError(what: string, complaint: string): SandstormError {
  return complainsOfFullDisk(complaint) ? diskFullError(what, complaint) : new SandstormError('internal', `${what} failed: ${complaint}`)
}
