import { mkdir } from 'node:fs/promises'
import { createBtrfsDriver, isOnBtrfs } from './btrfs-driver.js'
import type { StorageDriver, StorageDriverName } from './driver.js'
import { createOverlayDriver } from './overlay-driver.js'

/** The driver for a store in `dir`: btrfs when `dir` is on btrfs, else overlay, unless one is named. */
export async function pickStorageDriver(dir: string, name: StorageDriverName | 'auto' = 'auto'): Promise<StorageDriver> {
  if (name === 'overlay') return createOverlayDriver()
  if (name === 'btrfs') return createBtrfsDriver()
  await mkdir(dir, { recursive: true, mode: 0o700 })
  return (await isOnBtrfs(dir)) ? createBtrfsDriver() : createOverlayDriver()
}
