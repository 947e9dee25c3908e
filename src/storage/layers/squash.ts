/**
 * Squashing a chain of overlay layers into one, applying each layer's whiteouts and opaque dirs
 * the way overlayfs reads them, so that the result over the template shows the same tree.
 */
import { lstat, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { CallOptions } from '../../shared/index.js'
import { throwIfAborted } from '../../shared/index.js'
import { removeAll } from '../../shared/remove-all.js'
import { copyInto, copyTree, type CopyOptions } from './copy-tree.js'
import { isWhiteout, markOpaque, opaqueDirs } from './overlay-marks.js'

/**
 * Writes one layer at `dest` (which must not exist) equal to `layers` stacked, topmost first.
 * Whiteouts are kept in the result: what they hide may be in the template below it. Files are
 * hard-linked from the layers, not copied: layers are read-only for good, so sharing their files
 * is safe, and a squash then costs a link per file instead of a copy of the whole chain's data.
 */
export async function squashLayers(layers: string[], dest: string, options: CallOptions = {}): Promise<void> {
  const bottom = layers.at(-1)
  if (bottom === undefined) throw new Error('squashLayers needs at least one layer')
  try {
    await stack(layers, dest, { ...options, link: true })
  } catch (err) {
    // A file linked from very many squashed layers reaches the filesystem's link limit (EMLINK,
    // 65,000 on ext4): copying is slower but always works.
    if (options.signal?.aborted) throw err
    await removeAll(dest)
    await stack(layers, dest, options)
  }
}

async function stack(layers: string[], dest: string, options: CopyOptions): Promise<void> {
  await copyTree(layers.at(-1)!, dest, options)
  for (const layer of layers.slice(0, -1).reverse()) {
    throwIfAborted(options.signal)
    await applyLayer(layer, dest, options)
  }
}

/** Applies `upper` over the layer at `dest` in place. */
async function applyLayer(upper: string, dest: string, options: CopyOptions): Promise<void> {
  const opaque = await opaqueDirs(upper)
  const toMarkOpaque: string[] = []
  // First clear, in `dest`, whatever the upper layer replaces rather than merges with; then one
  // copy lays the upper layer over what is left. Every non-directory in the way is removed, so
  // the copy never writes through a link that the sandbox left in an earlier layer.
  async function clear(rel: string): Promise<void> {
    for (const entry of await readdir(join(upper, rel), { withFileTypes: true })) {
      const name = join(rel, entry.name)
      const src = join(upper, name)
      const target = join(dest, name)
      const below = await lstat(target).catch(() => null)
      if (!below) continue
      if (!entry.isDirectory()) {
        await removeAll(target)
      } else if (opaque.has(src)) {
        await removeAll(target)
      } else if (!below.isDirectory() || isWhiteout(below)) {
        // A plain dir over a file or a whiteout hides everything under it below: opaque.
        await removeAll(target)
        toMarkOpaque.push(target)
      } else {
        await clear(name)
      }
    }
  }
  await clear('')
  await copyInto(upper, dest, options)
  for (const dir of toMarkOpaque) await markOpaque(dir)
}
