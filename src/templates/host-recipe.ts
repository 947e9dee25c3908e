/**
 * The `host` template: a small skeleton of our own with the host's /usr bound read-only over it.
 * It builds instantly and needs no download. The host's /etc is never used: it holds /etc/shadow.
 */
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { throwIfAborted } from '../shared/index.js'
import type { TemplateRecipe } from './recipe.js'
import { chownTree, sandboxUser, writeNetworkFiles } from './rootfs-etc.js'

/** Recipe of the `host` template. */
export const hostRecipe: TemplateRecipe = {
  description: "the host's /usr, read-only",
  defaults: { memoryMiB: 512, cpus: 1 },
  readonlyBinds: [{ source: '/usr', target: '/usr' }],
  async build(rootfs, { logger, onProgress, signal }) {
    onProgress('I: making the skeleton of the host template')
    // Debian 12 is merged-/usr: these four live under /usr, which the bind provides.
    for (const dir of ['bin', 'sbin', 'lib', 'lib64']) await symlink(`usr/${dir}`, join(rootfs, dir))
    for (const dir of ['usr', 'proc', 'sys', 'dev', 'etc', 'tmp', 'root', 'home/user']) {
      await mkdir(join(rootfs, dir), { recursive: true, mode: 0o755 })
    }
    // chmod after mkdir: the process umask would otherwise clear the sticky and world bits.
    await chmod(join(rootfs, 'tmp'), 0o1777)
    await chmod(join(rootfs, 'root'), 0o700)
    throwIfAborted(signal)

    const etc = join(rootfs, 'etc')
    const u = sandboxUser
    await writeFile(
      join(etc, 'passwd'),
      [
        'root:x:0:0:root:/root:/bin/bash',
        `${u.name}:x:${u.uid}:${u.gid}::${u.home}:${u.shell}`,
        'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
        '',
      ].join('\n'),
    )
    await writeFile(join(etc, 'group'), ['root:x:0:', `${u.name}:x:${u.gid}:`, 'nogroup:x:65534:', ''].join('\n'))
    await writeFile(join(etc, 'nsswitch.conf'), 'passwd: files\ngroup: files\nhosts: files\n')
    await writeNetworkFiles(rootfs)
    await chownTree(join(rootfs, u.home), u.uid, u.gid, logger)
    throwIfAborted(signal)
  },
}
