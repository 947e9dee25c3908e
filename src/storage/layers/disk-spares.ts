/**
 * Spare sandbox disks: ext4 images formatted and mounted ahead of need, so that a create with a
 * quota takes one with a rename and a mount move (one system call, by the resident
 * native/mount-move, so that it never waits behind an mkfs) instead of an mkfs and a loop mount
 * (20 ms on a 2-core host). A few wait at a time, of the size asked for last; they are made one
 * after another at low priority, in a shell of their own, once creates paused (see whenQuiet).
 *
 * A spare is `<store>/spare-disks/<name>`, the mount point, with its image `<name>.disk` beside
 * it. Nothing of a sandbox is ever on one: a spare is an empty filesystem until it is taken, and
 * once taken it is the sandbox's writable dir (disk-image.ts) like one made on the spot.
 */
import { randomBytes } from 'node:crypto'
import { renameSync, rmdirSync } from 'node:fs'
import { mkdir, readdir, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createFramedHelper } from '../../shared/framed-helper.js'
import { whenQuiet } from '../../shared/when-quiet.js'
import { silentLogger, type Logger } from '../../shared/index.js'
import { createResidentShell, type ResidentShell } from '../../shared/resident-shell.js'
import { diskImageOf, formatAndMount, removeDiskImage } from './disk-image.js'
import { availableBytes } from './host-room.js'

/** Disks made ahead for the writable dirs of one layer store. */
export interface DiskSpares {
  /**
   * Puts a spare of `diskMiB` at `dir` (an empty dir): its filesystem mounted there, its image at
   * `diskImageOf(dir)`. False, with nothing changed, when none of that size is ready; the next
   * ones made are of that size.
   */
  take(dir: string, diskMiB: number): Promise<boolean>
  /** How many spares are mounted and waiting, by size in MiB. */
  ready(): Map<number, number>
  /** Stops making spares, and unmounts and deletes every one. */
  close(): Promise<void>
}

/** Options of createDiskSpares. */
export interface DiskSparesOptions {
  /** The layer store's dir: spares go to `<dir>/spare-disks`, on the writable dirs' filesystem. */
  storeDir: string
  /** How many wait at most. 0 makes none. */
  count: number
  logger?: Logger
}

interface Spare {
  path: string
  diskMiB: number
}

/** How long after the last take the next spares are made. */
const quietMs = 250
/**
 * How long after a take the next spares are made at the latest, quiet or not: under a steady
 * stream of creates, one every 200 ms say, no pause is ever that long, and every create paid for
 * an mkfs on its own path (50 ms at p50 against 34 with a spare on a 2-core host).
 */
const maxWaitMs = 1000
/** The resident mount mover, built by `npm run build`: a `mount --move` per take cost a process start (about 5 ms). */
const mountMovePath = fileURLToPath(new URL('../../../native/mount-move', import.meta.url))

/** A spare is handed over only while the host has this much free. */
const takeMarginBytes = 8 * 1024 * 1024
/** Spares are made only while the host has this much free. */
const fillMarginBytes = 64 * 1024 * 1024

/** Bytes free on the filesystem of `dir` (or its store's, before it exists), less root's reserve. */
function freeBytes(dir: string): number {
  try {
    return availableBytes(dir)
  } catch {
    return availableBytes(join(dir, '..'))
  }
}

/** The dir of a store's spare disks. */
export const spareDisksDirOf = (storeDir: string): string => join(storeDir, 'spare-disks')

/**
 * Starts keeping spares for the store at `options.storeDir`. What a crash left there is unmounted
 * and deleted first. None is made before the first `take`, which says what size is wanted.
 */
export function createDiskSpares(options: DiskSparesOptions): DiskSpares {
  const log = options.logger ?? silentLogger()
  const dir = spareDisksDirOf(options.storeDir)
  const shell = createResidentShell('spare disks')
  const moves = createFramedHelper(mountMovePath, 'mount move')
  const waiting: Spare[] = []
  let wanted: number | null = null
  let closed = options.count <= 0
  let filling: Promise<void> | null = null
  /** Fewer than `count` of the wanted size wait. */
  const short = (): boolean => !closed && wanted !== null && waiting.filter((s) => s.diskMiB === wanted).length < options.count
  const swept = sweepSpareDisks(dir, shell).catch((err: unknown) => {
    // Spares are a speed-up: without them, every disk is made on the spot.
    closed = true
    log.warn({ err, dir }, 'could not clear the spare disks left by the last run; no spares are kept')
  })

  /** Makes spares of the wanted size until enough wait, one at a time, dropping ones of another size to make room. */
  async function fill(): Promise<void> {
    await swept
    while (short()) {
      const size = wanted!
      if (freeBytes(options.storeDir) < fillMarginBytes) return
      if (waiting.length >= options.count) {
        const other = waiting.findIndex((s) => s.diskMiB !== size)
        await remove(waiting.splice(other, 1)[0]!, shell)
        continue
      }
      const path = join(dir, randomBytes(8).toString('hex'))
      try {
        await mkdir(dir, { recursive: true, mode: 0o700 })
        await mkdir(path, { mode: 0o700 })
        await formatAndMount(path, size, shell, 'nice -n 10 ')
      } catch (err) {
        await rm(path, { recursive: true, force: true }).catch(() => undefined)
        log.warn({ err, diskMiB: size }, 'could not make a spare disk; stopping until the next take')
        return
      }
      if (closed) {
        await remove({ path, diskMiB: size }, shell)
        return
      }
      waiting.push({ path, diskMiB: size })
    }
  }

  const refill = (): void => {
    if (closed || filling) return
    filling = fill().finally(() => {
      filling = null
      // A take during the last step of a fill asked for one more.
      if (short()) refill()
    })
  }

  /**
   * Makes the next spares once no take came for `quietMs`: an mkfs beside the create that took a
   * spare costs that create more (CPU, the loop device's writes) than the spare saved it. Takes
   * that never pause that long wait `maxWaitMs` from the first of them.
   */
  const refillWhenQuiet = whenQuiet(() => refill(), quietMs, maxWaitMs)

  async function close(): Promise<void> {
    closed = true
    refillWhenQuiet.cancel()
    await swept
    await filling
    for (const spare of waiting.splice(0)) await remove(spare, shell)
    await rm(dir, { recursive: true, force: true }).catch(() => undefined)
    shell.close()
    moves.close()
  }

  return {
    async take(target, diskMiB) {
      if (closed) return false
      // On a nearly full host a create makes its disk on the spot, and fails there as it did
      // before spares: a sandbox's sparse image on a host without room loses what it writes.
      if (freeBytes(dir) < takeMarginBytes) return false
      wanted = diskMiB
      const at = waiting.findIndex((s) => s.diskMiB === diskMiB)
      const spare = at < 0 ? undefined : waiting.splice(at, 1)[0]
      refillWhenQuiet.poke()
      if (!spare) return false
      // The image first: the loop device holds it open, so its name can change under the mount.
      // A crash between the steps leaves a spare mounted here, which the next start clears, and
      // an image beside the writable dir, which its removal deletes.
      const image = diskImageOf(target)
      try {
        renameSync(diskImageOf(spare.path), image)
      } catch (err) {
        log.warn({ err, spare: spare.path }, 'could not hand over a spare disk; making one')
        await remove(spare, shell)
        return false
      }
      const moved = await moves.call(Buffer.from(`${spare.path}\0${target}\0`)).catch((err: Error) => ({ ok: false, text: err.message }))
      if (!moved.ok) {
        // Back beside its mount, or gone: an image left at the target would stop the disk made on the spot.
        await rename(image, diskImageOf(spare.path)).catch(() => rm(image, { force: true }))
        await remove(spare, shell)
        // A mount under a shared mount cannot move (EINVAL): every take would fail the same way.
        closed = true
        log.warn({ output: moved.text.trim(), spare: spare.path }, 'could not move a spare disk into place; no spares are kept, each disk is made on the spot')
        await close()
        return false
      }
      try {
        rmdirSync(spare.path)
      } catch {
        // Left for the next start's sweep.
      }
      return true
    },
    ready() {
      const sizes = new Map<number, number>()
      for (const s of waiting) sizes.set(s.diskMiB, (sizes.get(s.diskMiB) ?? 0) + 1)
      return sizes
    },
    close,
  }
}

/** Unmounts a spare and deletes it with its image. */
async function remove(spare: Spare, shell: ResidentShell): Promise<void> {
  await removeDiskImage(spare.path, shell).catch(() => undefined)
  await rm(spare.path, { recursive: true, force: true }).catch(() => undefined)
}

/**
 * Unmounts and deletes whatever is in a store's spare-disks dir (a crash's leftovers). A spare that
 * cannot be unmounted fails the sweep: the dir is never removed with a mount under it.
 */
async function sweepSpareDisks(dir: string, shell: ResidentShell): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[])
  for (const name of names) if (!name.endsWith('.disk')) await removeDiskImage(join(dir, name), shell)
  await rm(dir, { recursive: true, force: true })
}
