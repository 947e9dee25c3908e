/**
 * The qemu guest (kernel, initramfs, root images) that setup or an earlier test built for the
 * shared debian template, linked into a test's own data dir so that no test builds one.
 */
import { existsSync } from 'node:fs'
import { mkdir, readlink, symlink } from 'node:fs/promises'
import { join } from 'node:path'
import { guestCacheKey } from '../../src/runtime/index.js'

/** Where the shared guests are: the default data dir's qemu cache. */
export const sharedGuestDir = join(process.env.SANDSTORM_DATA_DIR ?? '/var/lib/sandstorm', 'qemu', 'guest')

/**
 * Links the shared guest of `sharedRoot` (a template root of the shared store) into `dataDir`'s
 * cache under the name its agent looks for `ownRoot` by. Does nothing when there is no shared guest yet.
 */
export async function linkSharedGuest(dataDir: string, sharedRoot: string, ownRoot = sharedRoot): Promise<void> {
  const shared = join(sharedGuestDir, guestCacheKey(sharedRoot))
  if (!existsSync(shared)) return
  const own = join(dataDir, 'qemu', 'guest', guestCacheKey(ownRoot))
  if (existsSync(own)) return
  await mkdir(join(dataDir, 'qemu', 'guest'), { recursive: true })
  await symlink(shared, own)
}

/** The root of the shared debian template's current version. */
export async function sharedDebianRoot(templatesDir: string): Promise<string> {
  return join(templatesDir, 'debian', await readlink(join(templatesDir, 'debian', 'current')), 'rootfs')
}
