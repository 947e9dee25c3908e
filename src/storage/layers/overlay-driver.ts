import { mkdirSync, renameSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import type { CallOptions, Logger } from '../../shared/index.js'
import { createDiskSpares } from './disk-spares.js'
import { diskImageUsage, mountDiskImage, removeDiskImage } from './disk-image.js'
import type { LayerSource, RenewedWritable, StorageDriver, WritableDirs, WritableOptions } from './driver.js'
import { removeAll } from '../../shared/remove-all.js'
import { copyUpper, warmCopier } from './tree-copier.js'

/** Options of createOverlayDriver. */
export interface OverlayDriverOptions {
  /** Keep this many quota disks formatted and mounted ahead, in `storeDir` (disk-spares.ts). @default none */
  spareDisks?: { storeDir: string; count: number }
  logger?: Logger
}

/**
 * The overlay driver, for any filesystem: a snapshot copies the upper dir (only what the sandbox
 * changed, by a resident copier: tree-copier.ts; reflinked where the filesystem can), and a fork
 * stacks an empty upper dir on the snapshot's layer and its chain. A layer's root is the copied upper dir itself. A quota puts
 * the writable dir on its own ext4 image (disk-image.ts).
 */
export function createOverlayDriver(options: OverlayDriverOptions = {}): StorageDriver {
  const spares = options.spareDisks ? createDiskSpares({ storeDir: options.spareDisks.storeDir, count: options.spareDisks.count, logger: options.logger }) : undefined
  return {
    name: 'overlay',
    capturesByCopy: true,
    async makeWritable(path: string, from: LayerSource | null, options: WritableOptions = {}): Promise<WritableDirs> {
      // Synchronous, as in renewWritable: microseconds each, on a create's path.
      mkdirSync(path, { mode: 0o700 })
      if (options.diskMiB !== undefined && !(options.spare !== false && (await spares?.take(path, options.diskMiB)))) await mountDiskImage(path, options.diskMiB, options)
      const dirs = { upperDir: join(path, 'upper'), workDir: join(path, 'work'), lowerDirs: from ? [from.dir, ...from.chain] : [] }
      mkdirSync(dirs.upperDir, { mode: 0o755 })
      mkdirSync(dirs.workDir, { mode: 0o700 })
      warmCopier()
      return dirs
    },
    capture: (writablePath: string, layerDir: string, options?: CallOptions) => copyUpper(join(writablePath, 'upper'), layerDir, options),
    lowerDirOf: (layerDir: string) => layerDir,
    usage: diskImageUsage,
    async renewWritable(path: string, from: LayerSource | null): Promise<RenewedWritable> {
      // Beside the old dirs, so on their filesystem and quota: the sandbox's disk image stays.
      // Synchronous: microseconds each, where async calls wait in libuv's pool behind whatever
      // the last restore left to remove.
      const next = join(path, `.next-${randomBytes(6).toString('hex')}`)
      mkdirSync(next, { mode: 0o700 })
      mkdirSync(join(next, 'upper'), { mode: 0o755 })
      mkdirSync(join(next, 'work'), { mode: 0o700 })
      return {
        dirs: { upperDir: join(next, 'upper'), workDir: join(next, 'work'), lowerDirs: from ? [from.dir, ...from.chain] : [] },
        async commit() {
          // The new overlay holds its dirs, not their names: renamed under it, it goes on as it was.
          const old = `${next}.old`
          mkdirSync(old, { mode: 0o700 })
          renameSync(join(path, 'upper'), join(old, 'upper'))
          renameSync(join(path, 'work'), join(old, 'work'))
          renameSync(join(next, 'upper'), join(path, 'upper'))
          renameSync(join(next, 'work'), join(path, 'work'))
          void removeAll(next).catch(() => undefined)
          void removeAll(old).catch(() => undefined)
        },
        abort: () => removeAll(next),
      }
    },
    async remove(path: string) {
      await removeDiskImage(path)
      // Links are unlinked, never followed out of the tree (removeAll).
      await removeAll(path)
    },
    close: async () => spares?.close(),
  }
}
