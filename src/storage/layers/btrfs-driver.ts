import { lstat, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { linkSignal, runOrThrow, runProcess, type CallOptions } from '../../shared/index.js'
import { enableBtrfsQuotas } from './btrfs-quotas.js'
import type { DiskUsage, LayerSource, StorageDriver, WritableDirs, WritableOptions } from './driver.js'
import { removeAll } from '../../shared/remove-all.js'
import { deleteSubvolume, limitSubvolume, snapshotSubvolume, warmCopier } from './tree-copier.js'

/**
 * The btrfs driver, for a data dir on btrfs: writable dirs are subvolumes, a snapshot is a
 * read-only subvolume snapshot and a fork starts from a writable snapshot of the layer, so both
 * take the same time whatever the size of the tree. Snapshots are made by the resident copier
 * (tree-copier.ts), with the `btrfs` tool where it cannot. A layer made here holds every change since
 * the template, so its chain stays empty and nothing ever needs squashing.
 *
 * A writable dir is one subvolume holding `upper/` and `work/`: overlayfs moves files from its
 * work dir into the upper dir with rename, which cannot cross subvolumes.
 *
 * A quota is an exclusive-bytes qgroup limit on that subvolume: what it shares with the layer it
 * started from is free, what it writes counts. Quotas are turned on for the filesystem the first
 * time one is asked for, simple quotas where the kernel has them (btrfs-quotas.ts).
 */
export function createBtrfsDriver(): StorageDriver {
  let quotasOn: Promise<void> | null = null
  const enableQuotas = (dir: string) => {
    quotasOn ??= enableBtrfsQuotas(dir).then(
      () => undefined,
      (err: unknown) => {
        quotasOn = null
        throw err
      },
    )
    return quotasOn
  }
  return {
    name: 'btrfs',
    capturesByCopy: false,
    async makeWritable(path: string, from: LayerSource | null, options: WritableOptions = {}): Promise<WritableDirs> {
      const dirs = { upperDir: join(path, 'upper'), workDir: join(path, 'work'), lowerDirs: from ? from.chain.map((c) => join(c, 'upper')) : [] }
      if (from) {
        await viaCopier(() => snapshotSubvolume(from.dir, path, false, options), ['subvolume', 'snapshot', from.dir, path], options)
        // The snapshot's work dir holds what overlayfs left in it; a new mount wants it empty.
        await removeAll(dirs.workDir)
      } else {
        await btrfs(['subvolume', 'create', path], options)
        await mkdir(dirs.upperDir, { mode: 0o755 })
      }
      await mkdir(dirs.workDir, { mode: 0o700 })
      warmCopier()
      const diskMiB = options.diskMiB
      if (diskMiB !== undefined) {
        try {
          await enableQuotas(path)
          await viaCopier(() => limitSubvolume(path, diskMiB * 1024 * 1024, options), ['qgroup', 'limit', '-e', `${diskMiB}M`, path], options)
        } catch (err) {
          await viaCopier(() => deleteSubvolume(path), ['subvolume', 'delete', path]).catch(() => undefined)
          throw err
        }
      }
      return dirs
    },
    async usage(path: string): Promise<DiskUsage | null> {
      // One line for this subvolume's own qgroup: id, referenced, exclusive, max exclusive.
      const r = await runProcess('btrfs', ['qgroup', 'show', '-e', '-f', '--raw', path])
      if (r.exitCode !== 0) return null
      const row = r.stdout.split('\n').map((l) => l.trim().split(/\s+/)).find((f) => /^0\/\d+$/.test(f[0] ?? ''))
      const used = Number(row?.[2])
      const limit = Number(row?.[3])
      return Number.isFinite(used) && Number.isFinite(limit) ? { usedBytes: used, limitBytes: limit } : null
    },
    async capture(writablePath: string, layerDir: string, options?: CallOptions): Promise<void> {
      await viaCopier(() => snapshotSubvolume(writablePath, layerDir, true, options), ['subvolume', 'snapshot', '-r', writablePath, layerDir], options)
    },
    lowerDirOf: (layerDir: string) => join(layerDir, 'upper'),
    async remove(path: string): Promise<void> {
      const st = await lstat(path).catch(() => null)
      if (!st) return
      // The root of a subvolume has inode 256; anything else is a plain tree (made before the
      // data dir moved to btrfs, or by the overlay driver) and goes the ordinary way.
      if (st.isDirectory() && st.ino === 256) {
        await viaCopier(() => deleteSubvolume(path), ['subvolume', 'delete', path])
        return
      }
      await removeAll(path)
    },
  }
}

/**
 * A subvolume call made by a resident copier (an ioctl, no process started), or by the `btrfs`
 * tool where no copier could make it (python3 missing, the ioctl refused: the tool says why).
 */
async function viaCopier(copier: () => Promise<boolean>, args: string[], options: CallOptions = {}): Promise<void> {
  if (!(await copier())) await btrfs(args, options)
}

async function btrfs(args: string[], options: CallOptions = {}): Promise<void> {
  await runOrThrow('btrfs', args, `btrfs ${args.slice(0, 2).join(' ')}`, { signal: linkSignal(options) })
}

/** Is `dir` on a btrfs filesystem? */
export async function isOnBtrfs(dir: string): Promise<boolean> {
  const result = await runProcess('stat', ['-f', '-c', '%T', dir])
  return result.exitCode === 0 && result.stdout.trim() === 'btrfs'
}
