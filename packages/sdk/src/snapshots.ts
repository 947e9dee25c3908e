/** Snapshots as the server lists them: listing, looking up and deleting by id. */
import type { SnapshotInfo } from './wire/index.js'
import { resolveConnection, type ConnectionOptions } from './connection.js'
import { createApiClient } from './http-client.js'

const path = (id: string) => `/v1/snapshots/${encodeURIComponent(id)}`

/** Every snapshot, oldest first. */
export function listSnapshots(options: ConnectionOptions = {}): Promise<SnapshotInfo[]> {
  return createApiClient(resolveConnection(options)).json<SnapshotInfo[]>({ method: 'GET', path: '/v1/snapshots', signal: options.signal })
}

/** One snapshot; throws NotFoundError if there is none with this id. */
export function getSnapshot(snapshotId: string, options: ConnectionOptions = {}): Promise<SnapshotInfo> {
  return createApiClient(resolveConnection(options)).json<SnapshotInfo>({ method: 'GET', path: path(snapshotId), signal: options.signal })
}

/** Deletes a snapshot; throws ConflictError while a snapshot or a sandbox stands on it. */
export function deleteSnapshot(snapshotId: string, options: ConnectionOptions = {}): Promise<void> {
  return createApiClient(resolveConnection(options)).send({ method: 'DELETE', path: path(snapshotId), signal: options.signal })
}
