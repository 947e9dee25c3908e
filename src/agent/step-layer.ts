/**
 * A RUN step's commit: what the step wrote (its writable layer, captured by a snapshot) copied
 * into a fresh layer of the image layer store, whiteouts and all, but no device node.
 */
import { lstat, unlink } from 'node:fs/promises'
import { complainsOfFullDisk, diskFullError, endError, noRoomError, runOrThrow, runProcess, SandstormError } from '../shared/index.js'
import { isWhiteout } from '../storage/index.js'

/**
 * Copies the tree `top` into `dir` when it fits in `roomBytes` (the room the layer store gave):
 * refused up front (`resource_exhausted`) when the tree takes more on disk, so that a step that
 * filled its own disk cannot fill the host's. Device nodes are dropped, as an image's are when
 * unpacked: the build sandbox may make them (it has CAP_MKNOD), and a block device left in a
 * template's layer would be one more way to a host disk wherever a sandbox's policy slips.
 */
export async function copyStepLayer(top: string, dir: string, roomBytes: number): Promise<void> {
  const neededBytes = await diskUsageBytes(top)
  if (neededBytes > roomBytes) throw noRoomError("committing the build step's layer", { bytes: neededBytes, atLeast: false }, roomBytes)
  const r = await runProcess('cp', ['-a', '--no-dereference', '--preserve=all', `${top}/.`, dir])
  if (r.exitCode !== 0) {
    if (complainsOfFullDisk(r.stderr)) throw diskFullError("committing the build step's layer", r.stderr.trim())
    throw endError(r, "copying a build step's layer")!
  }
  await dropDeviceNodes(dir)
}

/**
 * Removes every character and block device under `dir` but overlay whiteouts (character 0/0).
 * `dir` is a fresh layer that nothing else writes: what find lists is still there to unlink.
 */
export async function dropDeviceNodes(dir: string): Promise<void> {
  // -print0 and bytes: a name the step made may hold a newline, or bytes that are no UTF-8.
  // The step chose the names: up to 128 MiB of them is listed, past that the commit fails.
  const out = (await runOrThrow('find', [dir, '(', '-type', 'b', '-o', '-type', 'c', ')', '-print0'], "listing a build step's device nodes", { encoding: 'buffer', maxOutputBytes: 128 * 1024 * 1024 })).stdout
  for (let start = 0, end = out.indexOf(0); end >= 0; start = end + 1, end = out.indexOf(0, start)) {
    const path = out.subarray(start, end)
    const st = await lstat(path)
    if (isWhiteout(st)) continue
    if (st.isCharacterDevice() || st.isBlockDevice()) await unlink(path)
  }
}

/** The bytes a tree takes on its disk (du: allocated blocks, each hardlinked file once), which a copy of it takes again. */
async function diskUsageBytes(dir: string): Promise<number> {
  const r = await runOrThrow('du', ['-s', '-B1', '--', dir], "measuring a build step's layer")
  const bytes = Number(/^(\d+)\s/.exec(r.stdout)?.[1])
  if (!Number.isSafeInteger(bytes)) throw new SandstormError('internal', `measuring a build step's layer failed: expected a byte count from du, got ${JSON.stringify(r.stdout.slice(0, 200))}`)
  return bytes
}
