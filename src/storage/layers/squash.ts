/**
 * Squashing a chain of overlay layers into one, applying each layer's whiteouts and opaque dirs
 * the way overlayfs reads them, so that the result over the template shows the same tree.
 */
import type { CallOptions } from '../../shared/index.js'
import { throwIfAborted } from '../../shared/index.js'
import { removeAll } from '../../shared/remove-all.js'
import { copyInto, copyTree, type CopyOptions } from './copy-tree.js'
import { clearReplaced } from './tree-copier.js'

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

/**
 * Applies `upper` over the layer at `dest` in place: first whatever `upper` replaces rather than
 * merges with is cleared from `dest` (every non-directory in the way too, so that the copy never
 * writes through a link the sandbox left in an earlier layer), then one copy lays `upper` over
 * what is left. The clearing walks both trees by descriptors and byte names (clearReplaced): a
 * walk by Node's decoded names took a name that is no UTF-8 for another entry, a link to a host
 * directory, and cleared and marked through it.
 */
async function applyLayer(upper: string, dest: string, options: CopyOptions): Promise<void> {
  await clearReplaced(upper, dest, options)
  await copyInto(upper, dest, options)
}
