/**
 * Uploads held to the host's free space (see storage/layers/host-room.ts for why). This guards
 * uploads only: a sandbox's own writes, or writes running beside the upload, can still use up the
 * host's space.
 */
import { noRoomError } from '../shared/index.js'
import { hostMarginBytes, roomIn, withinRoom } from '../storage/index.js'

export { hostMarginBytes, roomIn }

/**
 * Refuses at once (`resource_exhausted`) when the filesystem of `dir` has less than the margin
 * free; else passes `data` on, failing it as soon as it brings more than that room.
 */
export async function withinHostSpace(dir: string, data: AsyncIterable<Uint8Array>, marginBytes = hostMarginBytes): Promise<AsyncIterable<Uint8Array>> {
  const room = await roomIn(dir, marginBytes)
  if (room <= 0) throw noRoomError('the upload', undefined, room)
  return withinRoom(data, room, 'the upload')
}
