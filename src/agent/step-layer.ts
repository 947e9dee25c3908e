/**
 * A RUN step's commit: what the step wrote (its writable layer, captured by a snapshot) copied
 * into a fresh layer of the image layer store, whiteouts and all.
 */
import { execa } from 'execa'
import { complainsOfFullDisk, diskFullError, noRoomError, SandstormError } from '../shared/index.js'

/**
 * Copies the tree `top` into `dir` when it fits in `roomBytes` (the room the layer store gave):
 * refused up front (`resource_exhausted`) when the tree takes more on disk, so that a step that
 * filled its own disk cannot fill the host's.
 */
export async function copyStepLayer(top: string, dir: string, roomBytes: number): Promise<void> {
  const neededBytes = await diskUsageBytes(top)
  if (neededBytes > roomBytes) throw noRoomError("committing the build step's layer", { bytes: neededBytes, atLeast: false }, roomBytes)
  const r = await execa('cp', ['-a', '--no-dereference', '--preserve=all', `${top}/.`, dir], { reject: false, stdin: 'ignore' })
  if (r.exitCode !== 0) {
    if (complainsOfFullDisk(r.stderr)) throw diskFullError("committing the build step's layer", r.stderr.trim())
    throw new SandstormError('internal', `copying a build step's layer failed: ${r.stderr.trim()}`)
  }
}

/** The bytes a tree takes on its disk (du: allocated blocks, each hardlinked file once), which a copy of it takes again. */
async function diskUsageBytes(dir: string): Promise<number> {
  const r = await execa('du', ['-s', '-B1', '--', dir], { reject: false, stdin: 'ignore' })
  const bytes = Number(/^(\d+)\s/.exec(r.stdout)?.[1])
  if (r.exitCode !== 0 || !Number.isSafeInteger(bytes)) throw new SandstormError('internal', `measuring a build step's layer failed: ${r.stderr.trim() || r.stdout}`)
  return bytes
}
