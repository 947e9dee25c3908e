/**
 * Uploads held to the host's free space (see storage/layers/host-room.ts for why). This guards
 * uploads only: a sandbox's own writes, or writes running beside the upload, can still use up the
 * host's space.
 */
import { hostMarginBytes, roomIn, roomOrRefuse, withinRoom } from '../storage/index.js'

export { hostMarginBytes, roomIn }

/**
 * Refuses at once (`resource_exhausted`) when the filesystem of `dir` has less than the margin
 * free; else passes `data` on, failing it as soon as it brings more than that room.
 */
export async function withinHostSpace(dir: string, data: AsyncIterable<Uint8Array>, marginBytes = hostMarginBytes): Promise<AsyncIterable<Uint8Array>> {
  const room = await roomOrRefuse(dir, 'the upload', (d) => roomIn(d, marginBytes))
  return withinRoom(data, room, 'the upload')
}
