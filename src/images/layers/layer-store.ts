/**
 * The content-addressed store of unpacked image layers, shared by every template on the host.
 *
 *   <dir>/<hex>/        the layer's tree (an overlayfs lower dir), <hex> from its sha256 id
 *   <dir>/<hex>.json    its record, written last: a tree without one is a crash leftover
 *   <dir>/.tmp-<random> an unpack or fill in progress, renamed into place once complete
 */
import { randomBytes } from 'node:crypto'
import { chmod, lstat, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { z } from 'zod'
import { linkSignal, SandstormError, silentLogger, throwIfAborted, type CallOptions, type Logger } from '../../shared/index.js'
import { inodesOrRefuse, roomBudget, roomOrRefuse, type RoomOf } from '../../storage/layers/host-room.js'
import { removeTree, treeSizeBytes } from '../../templates/tree.js'
import type { Digest, ImageLayerStore, StoredLayer, UnpackLimits } from '../contracts.js'
import { decompressed } from './decompress.js'
import { unpackTar } from './unpack-tar.js'

/** Options of createImageLayerStore. */
export interface ImageLayerStoreOptions {
  /** The store's directory; made (0700) when missing. */
  dir: string
  /** @default a silent logger */
  logger?: Logger
  /** The room a new layer may take on the store's disk. @default roomIn: the free space less the host's margin */
  roomOf?: RoomOf
  /** The files (inodes) a new layer may make on the store's disk. @default inodesIn: the free inodes less a margin */
  inodesOf?: RoomOf
}

const idPattern = /^sha256:([0-9a-f]{64})$/
const tmpPrefix = '.tmp-'

const recordSchema = z.object({
  id: z.string().regex(idPattern),
  sizeBytes: z.number().int().nonnegative(),
  createdAt: z.string(),
})

/** Makes a layer's tree in `tmp`, taking at most `roomBytes` of the disk and `roomFiles` of its inodes; resolves with its size. */
type Make = (tmp: string, signal: AbortSignal, roomBytes: number, roomFiles: number) => Promise<number>

/** One unpack or fill in progress, shared by the calls that wait for it. */
interface InFlight {
  promise: Promise<StoredLayer>
  controller: AbortController
  waiters: number
}

/** The image layer store at `options.dir`. */
export function createImageLayerStore(options: ImageLayerStoreOptions): ImageLayerStore {
  const dir = options.dir
  const logger = options.logger ?? silentLogger()
  const inFlight = new Map<Digest, InFlight>()
  let opened: Promise<void> | null = null

  /** Makes the directory and removes what a crash left: temp dirs, trees without records, records without trees. */
  function open(): Promise<void> {
    opened ??= (async () => {
      await mkdir(dir, { recursive: true, mode: 0o700 })
      const names = new Set(await readdir(dir))
      for (const name of names) {
        const record = /^([0-9a-f]{64})\.json$/.exec(name)
        const leftover = name.startsWith(tmpPrefix) || (record ? !names.has(record[1]!) : /^[0-9a-f]{64}$/.test(name) && !names.has(`${name}.json`))
        if (!leftover) continue
        logger.info({ path: join(dir, name) }, 'removing an image layer left by a crash')
        await removeTree(join(dir, name))
      }
    })()
    opened.catch(() => {
      opened = null
    })
    return opened
  }

  function hexOf(id: string): string {
    const match = idPattern.exec(id)
    if (!match) throw new SandstormError('invalid_argument', `layer id ${JSON.stringify(id)} is not a digest; expected sha256:<64 hex digits>`)
    return match[1]!
  }

  async function get(id: Digest): Promise<StoredLayer | null> {
    const hex = hexOf(id)
    await open()
    let text: string
    try {
      text = await readFile(join(dir, `${hex}.json`), 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw error
    }
    const record = recordSchema.parse(JSON.parse(text))
    const st = await lstat(join(dir, hex)).catch(() => null)
    if (!st?.isDirectory()) return null
    return { id, dir: join(dir, hex), sizeBytes: record.sizeBytes }
  }

  /**
   * The layer `id`, made by `make` in a fresh temp dir when not stored. Calls for one id share one
   * make, which is cancelled only when every caller waiting for it has cancelled.
   */
  async function obtain(id: Digest, make: Make, options: CallOptions): Promise<StoredLayer> {
    const signal = linkSignal(options)
    for (;;) {
      throwIfAborted(signal)
      const existing = inFlight.get(id)
      if (existing && existing.controller.signal.aborted) {
        // Being cancelled by all who waited: let it clean up, then start afresh.
        await existing.promise.catch(() => {})
        continue
      }
      if (existing) return wait(existing, signal)
      const stored = await get(id)
      if (stored) return stored
      // Another call may have started it while get() read the disk.
      if (inFlight.has(id)) continue
      return wait(startFlight(id, make), signal)
    }
  }

  function startFlight(id: Digest, make: Make): InFlight {
    const controller = new AbortController()
    const flight: InFlight = { controller, waiters: 0, promise: Promise.resolve(null as never) }
    flight.promise = (async () => {
      try {
        return await store(id, make, controller.signal)
      } finally {
        if (inFlight.get(id) === flight) inFlight.delete(id)
      }
    })()
    flight.promise.catch(() => {})
    inFlight.set(id, flight)
    return flight
  }

  function wait(flight: InFlight, signal: AbortSignal | undefined): Promise<StoredLayer> {
    flight.waiters++
    if (!signal) return flight.promise
    return new Promise<StoredLayer>((resolve, reject) => {
      const onAbort = (): void => {
        if (--flight.waiters === 0) flight.controller.abort(signal.reason)
        try {
          throwIfAborted(signal)
        } catch (error) {
          reject(error)
        }
      }
      signal.addEventListener('abort', onAbort, { once: true })
      flight.promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
    })
  }

  async function store(id: Digest, make: Make, signal: AbortSignal): Promise<StoredLayer> {
    const hex = hexOf(id)
    await open()
    // Measured before the layer is begun, and handed to what makes it: the store's disk often holds
    // the sandboxes' sparse disks too, which must not meet a full one (storage/layers/host-room.ts).
    const roomBytes = await roomOrRefuse(dir, `storing layer ${id}`, options.roomOf)
    const roomFiles = await inodesOrRefuse(dir, `storing layer ${id}`, options.inodesOf)
    const tmp = join(dir, `${tmpPrefix}${randomBytes(8).toString('hex')}`)
    await mkdir(tmp)
    let sizeBytes: number
    try {
      // The layer's root becomes the sandbox's / where no upper layer has it: not the temp dir's 0700.
      await chmod(tmp, 0o755)
      sizeBytes = await make(tmp, signal, roomBytes, roomFiles)
      throwIfAborted(signal)
      await renameOver(tmp, join(dir, hex))
    } catch (error) {
      await removeTree(tmp)
      throw error
    }
    const record = { id, sizeBytes, createdAt: new Date().toISOString() }
    const recordTmp = join(dir, `${tmpPrefix}${randomBytes(8).toString('hex')}.json`)
    await writeFile(recordTmp, `${JSON.stringify(record)}\n`, { mode: 0o600 })
    await rename(recordTmp, join(dir, `${hex}.json`))
    logger.info({ layer: id, sizeBytes }, 'image layer stored')
    return { id, dir: join(dir, hex), sizeBytes }
  }

  return {
    dir,
    get,
    async ensure(id: Digest, mediaType: string, openStream: () => Promise<Readable>, options: CallOptions & UnpackLimits = {}): Promise<StoredLayer> {
      hexOf(id)
      return obtain(
        id,
        async (tmp, signal, roomBytes, roomFiles) => {
          const input = await openStream()
          const { sizeBytes } = await unpackTar(await decompressed(input, mediaType, { signal }), tmp, {
            whiteouts: true,
            label: `layer ${id}`,
            signal,
            logger,
            room: roomBudget(roomBytes, `unpacking layer ${id}`, roomFiles),
            ...(options.maxLayerBytes !== undefined && { maxLayerBytes: options.maxLayerBytes }),
            ...(options.maxEntries !== undefined && { maxEntries: options.maxEntries }),
          })
          return sizeBytes
        },
        options,
      )
    },
    async create(id: Digest, fill: (dir: string, roomBytes: number, roomFiles: number) => Promise<void>, options: CallOptions = {}): Promise<StoredLayer> {
      hexOf(id)
      return obtain(
        id,
        async (tmp, _signal, roomBytes, roomFiles) => {
          await fill(tmp, roomBytes, roomFiles)
          return treeSizeBytes(tmp)
        },
        options,
      )
    },
    async sweep(keep: ReadonlySet<string>): Promise<Digest[]> {
      await open()
      const removed: Digest[] = []
      for (const name of await readdir(dir)) {
        const match = /^([0-9a-f]{64})\.json$/.exec(name)
        if (!match) continue
        const id = `sha256:${match[1]}` as Digest
        if (keep.has(id) || inFlight.has(id)) continue
        // The record goes first: a crash part way leaves a tree without one, removed at the next open.
        await rm(join(dir, name), { force: true })
        await removeTree(join(dir, match[1]!))
        removed.push(id)
        logger.info({ layer: id }, 'image layer removed')
      }
      return removed
    },
  }
}

/** Renames a finished tree into place; a tree already there without a record (a sweep's or a crash's leftover) is replaced. */
async function renameOver(from: string, to: string): Promise<void> {
  try {
    await rename(from, to)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error
    await removeTree(to)
    await rename(from, to)
  }
}
