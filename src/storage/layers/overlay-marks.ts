/** Overlayfs's marks inside a layer: whiteouts (0/0 char devices) and opaque dirs (an xattr). */
import type { Stats } from 'node:fs'
import { runOrThrow } from '../../shared/index.js'

/** The xattr that makes a directory hide everything below it in lower layers. */
export const opaqueXattr = 'trusted.overlay.opaque'

/** Is this entry (from lstat) a whiteout: a character device numbered 0/0? */
export function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0
}

/** Marks a directory opaque (never following a symlink). */
export async function markOpaque(dir: string): Promise<void> {
  await runOrThrow('setfattr', ['-h', '-n', opaqueXattr, '-v', 'y', dir], `marking ${dir} opaque`)
}
