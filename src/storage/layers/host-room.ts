/**
 * Room on the host's filesystem. A sandbox's disk is a sparse image on it (disk-image.ts): when
 * the host has no room for what the sandbox writes, the write still succeeds in the sandbox, fails
 * later in the loop device, and the data is lost with the image's journal aborted. So what the
 * host itself writes for a sandbox (an upload, a snapshot's copy, a build) keeps a margin free.
 */
import { statfsSync } from 'node:fs'
import { noRoomError, SandstormError } from '../../shared/index.js'

/** Room kept free for what the images' filesystems write beside the data (metadata, journal). @default 64 MiB */
export const hostMarginBytes = 64 * 1024 * 1024

/**
 * Bytes free on the filesystem of `dir`, less the blocks kept for root (bavail, the smaller
 * figure). Synchronous, microseconds: it sits on a create's and a snapshot's path, where an async
 * call waits in libuv's pool behind whatever queued there first (a restore's removals).
 */
export function availableBytes(dir: string): number {
  const s = statfsSync(dir)
  return s.bavail * s.bsize
}

/** Bytes that may still be written on the filesystem of `dir`, keeping `marginBytes` free (0 or less: none). */
export async function roomIn(dir: string, marginBytes = hostMarginBytes): Promise<number> {
  return availableBytes(dir) - marginBytes
}

/**
 * Files (inodes) that may still be made on the filesystem of `dir`, keeping a margin free for the
 * sandboxes' own (5% of the filesystem's, at most 65,536). A filesystem that makes inodes as it
 * needs them (btrfs reports none) has no such bound: Infinity.
 */
export async function inodesIn(dir: string): Promise<number> {
  const s = statfsSync(dir)
  if (s.files === 0) return Infinity
  return s.ffree - Math.min(65_536, Math.ceil(s.files / 20))
}

/** Where a writer learns its room: roomIn with the host's margin, or a stand-in that tests give. */
export type RoomOf = (dir: string) => Promise<number>

/** The room on the filesystem of `dir` (by `roomOf`, roomIn by default); none: `resource_exhausted` naming `what` needed it. */
export async function roomOrRefuse(dir: string, what: string, roomOf: RoomOf = (d) => roomIn(d)): Promise<number> {
  const room = await roomOf(dir)
  if (room <= 0) throw noRoomError(what, undefined, room)
  return room
}

/** The block an ext4 or xfs data disk allocates by: a file takes whole ones, a directory at least one. */
export const blockBytes = 4096

/** Bytes that `bytes` of a file's data take on disk: whole blocks. */
export function inBlocks(bytes: number): number {
  return Math.ceil(bytes / blockBytes) * blockBytes
}

/** What one write (an unpack, a copy) may still take of the room it measured when it began. */
export interface RoomBudget {
  /** Takes `bytes` and `files` more: `resource_exhausted`, saying what was needed and what was free, past the room. */
  take(bytes: number, files?: number): void
}

/**
 * A budget of `roomBytes` (and `roomFiles` inodes) for the write `what` ("unpacking layer
 * sha256:…"). Measured once: others writing beside it (sandboxes, other builds) are what the
 * margin is for. A layer of a million empty files takes no byte, but every sandbox's disk image
 * needs inodes of the same filesystem.
 */
export function roomBudget(roomBytes: number, what: string, roomFiles = Infinity): RoomBudget {
  let used = 0
  let files = 0
  return {
    take(bytes, more = 0) {
      used += bytes
      files += more
      if (used > roomBytes) throw noRoomError(what, { bytes: used, atLeast: true }, roomBytes)
      if (files > roomFiles) throw noInodesError(what, files, roomFiles)
    },
  }
}

/** The inodes of the filesystem of `dir` (by `inodesOf`, inodesIn by default); none: `resource_exhausted` naming `what` needed them. */
export async function inodesOrRefuse(dir: string, what: string, inodesOf: RoomOf = inodesIn): Promise<number> {
  const room = await inodesOf(dir)
  if (room <= 0) throw noInodesError(what, undefined, room)
  return room
}

function noInodesError(what: string, needed: number | undefined, room: number): SandstormError {
  const needs = needed !== undefined ? `it needs at least ${needed} files and ` : ''
  return new SandstormError('resource_exhausted', `${what} failed: the host's disk is out of inodes: ${needs}${Math.max(0, room)} are free beyond the margin kept for running sandboxes' disks; free some and try again`)
}

/** Passes `data` on, failing it as soon as it brings more than `roomBytes` (see roomBudget). */
export async function* withinRoom(data: AsyncIterable<Uint8Array>, roomBytes: number, what: string): AsyncGenerator<Uint8Array> {
  const budget = roomBudget(roomBytes, what)
  for await (const chunk of data) {
    budget.take(chunk.byteLength)
    yield chunk
  }
}
