/**
 * Uploads held to the host's free space. A sandbox's disk is a sparse image on the host's
 * filesystem (storage/layers/disk-image.ts): when the host has no room for what the sandbox writes,
 * the write still succeeds in the sandbox, fails later in the loop device, and the data is lost
 * with the image's journal aborted. So an upload is refused before it can write more than the host
 * has free, and the runtime removes its partial file.
 *
 * This guards uploads only: a sandbox's own writes, or writes running beside the upload, can still
 * use up the host's space.
 */
import { statfs } from 'node:fs/promises'
import { diskFullError, type SandstormError } from '../shared/index.js'

/** Room kept free for what the image's filesystem writes beside the data (metadata, journal). @default 64 MiB */
export const hostMarginBytes = 64 * 1024 * 1024

const diskFull = (): SandstormError => diskFullError('the upload', undefined)

/** Bytes free on the filesystem of `dir`, less the blocks it keeps for root (the smaller figure). */
async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir)
  return s.bavail * s.bsize
}

/** Bytes that may still be written on the filesystem of `dir`, keeping `marginBytes` free (0 or less: none). */
export async function roomIn(dir: string, marginBytes = hostMarginBytes): Promise<number> {
  return (await freeBytes(dir)) - marginBytes
}

/**
 * Refuses at once (`resource_exhausted`) when the filesystem of `dir` has less than the margin
 * free; else passes `data` on, failing it as soon as it brings more than that room.
 */
export async function withinHostSpace(dir: string, data: AsyncIterable<Uint8Array>, marginBytes = hostMarginBytes): Promise<AsyncIterable<Uint8Array>> {
  const room = await roomIn(dir, marginBytes)
  if (room <= 0) throw diskFull()
  return (async function* () {
    let bytes = 0
    for await (const chunk of data) {
      bytes += chunk.byteLength
      if (bytes > room) throw diskFull()
      yield chunk
    }
  })()
}
