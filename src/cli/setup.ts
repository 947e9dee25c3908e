/**
 * `sandstorm setup`: prepare this machine ahead of the first sandbox.
 *   --btrfs-loop SIZE   put the layer store on a btrfs loop file, with quotas on (disk quotas are
 *                       qgroup limits there: no per-sandbox image to format and mount)
 *   --qemu-guest NAME   build the qemu guest of a template (kernel, initramfs, root image), which
 *                       the first qemu sandbox of it would otherwise build (a kernel download, then seconds)
 */
import { existsSync } from 'node:fs'
import { mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Command } from 'commander'
import { ConflictError, InvalidArgumentError } from '@sandstorm/sdk'
import { defaultDataDir } from './template.js'

interface SetupFlags {
  btrfsLoop?: string
  qemuGuest?: string
  dataDir: string
  templatesDir?: string
}

/** Registers `setup`. */
export function registerSetup(program: Command): void {
  program
    .command('setup')
    .description('prepare this machine: a btrfs layer store with quotas (--btrfs-loop SIZE), a template\'s qemu guest (--qemu-guest NAME)')
    .option('--btrfs-loop <size>', 'make a btrfs loop file of this size (e.g. 20G) and mount it as the layer store (<data dir>/storage)')
    .option('--qemu-guest <template>', 'build the qemu guest of this template now')
    .option('--data-dir <dir>', 'data directory', defaultDataDir())
    .option('--templates-dir <dir>', 'where templates are (default <data-dir>/templates)')
    .action(async (flags: SetupFlags) => {
      if (flags.btrfsLoop === undefined && flags.qemuGuest === undefined) {
        throw new InvalidArgumentError('invalid_argument', 'setup: expected --btrfs-loop SIZE, --qemu-guest TEMPLATE or both')
      }
      if (flags.btrfsLoop !== undefined) await btrfsLoop(flags.btrfsLoop, flags.dataDir)
      if (flags.qemuGuest !== undefined) await qemuGuest(flags.qemuGuest, flags.dataDir, flags.templatesDir ?? process.env.SANDSTORM_TEMPLATES_DIR ?? join(flags.dataDir, 'templates'))
    })
}

async function btrfsLoop(size: string, dataDir: string): Promise<void> {
  if (!/^[1-9][0-9]*[KMGT]$/.test(size)) {
    throw new InvalidArgumentError('invalid_argument', `--btrfs-loop: expected a size such as 512M or 20G, got "${size}"`)
  }
  const storage = join(dataDir, 'storage')
  const image = join(dataDir, 'storage.btrfs')
  // Loaded here, not at the top: every command's registration is imported by every CLI start.
  const [{ runOrThrow }, { enableBtrfsQuotas, isMounted }] = await Promise.all([import('../shared/run-process.js'), import('../storage/index.js')])
  if (await isMounted(storage)) {
    process.stdout.write(`${storage} is mounted already\n`)
    return
  }
  await mkdir(storage, { recursive: true, mode: 0o700 })
  if ((await readdir(storage)).length > 0) {
    throw new ConflictError('failed_precondition', `${storage} holds layers already: expected it empty (stop sandstorm and remove its sandboxes and snapshots first)`)
  }
  if (!existsSync(image)) {
    await runOrThrow('truncate', ['-s', size, image], `making ${image}`)
    await runOrThrow('mkfs.btrfs', ['-q', image], `formatting ${image}`)
  }
  await runOrThrow('mount', ['-o', 'loop', image, storage], `mounting ${image} at ${storage}`)
  const quotas = await enableBtrfsQuotas(storage)
  process.stdout.write(`btrfs layer store mounted at ${storage} (from ${image}), ${quotas === 'simple' ? 'simple quotas' : 'quotas (full qgroups: this kernel has no simple quotas)'} on; to mount it at boot, add to /etc/fstab:\n${image} ${storage} btrfs loop 0 0\n`)
}

async function qemuGuest(name: string, dataDir: string, templatesDir: string): Promise<void> {
  const [{ createTemplateStore }, { buildGuest, guestArtifacts, guestCacheKey }, { createLogger }] = await Promise.all([
    import('../templates/index.js'),
    import('../runtime/index.js'),
    import('../shared/index.js'),
  ])
  const template = await createTemplateStore({ dir: templatesDir }).resolve(name)
  // A template of several layers (one built from an image) gets the guest of its merged layers.
  const lowerDirs = template.rootfs.lowerDirs
  const dir = join(dataDir, 'qemu', 'guest', guestCacheKey(lowerDirs))
  // Quiet when there is nothing to do (scripts/setup.sh runs this every time).
  if (existsSync(guestArtifacts(dir).rootImage)) return
  const guest = await buildGuest({ dir, lowerDirs, logger: createLogger() })
  process.stdout.write(`qemu guest of template ${name} ready: ${guest.rootImage}\n`)
}
