/** `sandstorm setup --btrfs-loop SIZE`: put the layer store on a btrfs loop file. */
import { existsSync } from 'node:fs'
import { mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Command } from 'commander'
import { execa } from 'execa'
import { ConflictError, InvalidArgumentError } from '../sdk/index.js'
import { isMounted } from '../storage/index.js'
import { defaultDataDir } from './template.js'

/** Registers `setup`. */
export function registerSetup(program: Command): void {
  program
    .command('setup')
    .description('prepare this machine: --btrfs-loop SIZE makes a btrfs loop file and mounts it as the layer store (<data dir>/storage)')
    .requiredOption('--btrfs-loop <size>', 'size of the loop file, e.g. 20G')
    .option('--data-dir <dir>', 'data directory', defaultDataDir())
    .action(async (flags: { btrfsLoop: string; dataDir: string }) => {
      if (!/^[1-9][0-9]*[KMGT]$/.test(flags.btrfsLoop)) {
        throw new InvalidArgumentError('invalid_argument', `--btrfs-loop: expected a size such as 512M or 20G, got "${flags.btrfsLoop}"`)
      }
      const storage = join(flags.dataDir, 'storage')
      const image = join(flags.dataDir, 'storage.btrfs')
      if (await isMounted(storage)) {
        process.stdout.write(`${storage} is mounted already\n`)
        return
      }
      await mkdir(storage, { recursive: true, mode: 0o700 })
      if ((await readdir(storage)).length > 0) {
        throw new ConflictError('failed_precondition', `${storage} holds layers already: expected it empty (stop sandstorm and remove its sandboxes and snapshots first)`)
      }
      if (!existsSync(image)) {
        await execa('truncate', ['-s', flags.btrfsLoop, image])
        await execa('mkfs.btrfs', ['-q', image])
      }
      await execa('mount', ['-o', 'loop', image, storage])
      process.stdout.write(`btrfs layer store mounted at ${storage} (from ${image}); to mount it at boot, add to /etc/fstab:\n${image} ${storage} btrfs loop 0 0\n`)
    })
}
