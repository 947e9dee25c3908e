/**
 * Room on the host's filesystem. A sandbox's disk is a sparse image on it (disk-image.ts): when
 * the host has no room for what the sandbox writes, the write still succeeds in the sandbox, fails
 * later in the loop device, and the data is lost with the image's journal aborted. So what the
 * host itself writes for a sandbox (an upload, a snapshot's copy, a build) keeps a margin free.
 */
import { statfs } from 'node:fs/promises'

/** Room kept free for what the images' filesystems write beside the data (metadata, journal). @default 64 MiB */
export const hostMarginBytes = 64 * 1024 * 1024

/** Bytes that may still be written on the filesystem of `dir`, keeping `marginBytes` free (0 or less: none). */
export async function roomIn(dir: string, marginBytes = hostMarginBytes): Promise<number> {
  const s = await statfs(dir)
  // bavail: less the blocks kept for root, the smaller figure.
  return s.bavail * s.bsize - marginBytes
}
