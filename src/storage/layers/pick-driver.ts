import { mkdir } from 'node:fs/promises'
import type { Logger } from '../../shared/index.js'
import { createBtrfsDriver, isOnBtrfs } from './btrfs-driver.js'
import type { StorageDriver, StorageDriverName } from './driver.js'
import { createOverlayDriver } from './overlay-driver.js'

/** Options of pickStorageDriver. */
export interface PickDriverOptions {
  /** Overlay: how many quota disks to keep formatted and mounted ahead. @default 0 */
  spareDisks?: number
  logger?: Logger
}

/** The driver for a store in `dir`: btrfs when `dir` is on btrfs, else overlay, unless one is named. */
export async function pickStorageDriver(dir: string, name: StorageDriverName | 'auto' = 'auto', options: PickDriverOptions = {}): Promise<StorageDriver> {
  const overlay = (): StorageDriver => createOverlayDriver({ spareDisks: options.spareDisks ? { storeDir: dir, count: options.spareDisks } : undefined, logger: options.logger })
  if (name === 'overlay') return overlay()
  if (name === 'btrfs') return createBtrfsDriver()
  await mkdir(dir, { recursive: true, mode: 0o700 })
  return (await isOnBtrfs(dir)) ? createBtrfsDriver() : overlay()
}
