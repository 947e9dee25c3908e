/**
 * The layer store: read-only layers (snapshots) and the writable dirs of the sandboxes stacked on
 * them, under one directory.
 *
 *   <dir>/layers/<id>/tree          the layer (a read-only subvolume on btrfs)
 *   <dir>/layers/<id>/layer.json    its LayerRecord, written last: a layer without one is a leftover
 *   <dir>/writable/<sandboxId>      a sandbox's writable dir (overlay upper and work dirs)
 *   <dir>/writable/<sandboxId>.json the layers it stands on
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs'
import { mkdir, readFile, readdir, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { diskFullError, idPattern, SandstormError, silentLogger, type CallOptions, type Logger } from '../../shared/index.js'
import { roomIn } from './host-room.js'
import type { DiskUsage, RenewedWritable, StorageDriver, WritableDirs, WritableOptions } from './driver.js'
import { removeAll } from '../../shared/remove-all.js'
import { sweepRemovedDiskImages } from './disk-image.js'
import { squashLayers } from './squash.js'

/** A read-only layer as the store records it. */
export interface LayerRecord {
  id: string
  /** The layer it was taken over (its parent in the snapshot tree), or null. */
  parentId: string | null
  /** Layers this one is stacked on, topmost first; empty once squashed. */
  chain: string[]
  driver: string
  createdAt: string
  /** What the caller keeps with the layer (the agent: template, config, env). */
  meta: Record<string, unknown>
}

const layerSchema = z.object({
  id: z.string().regex(idPattern),
  parentId: z.string().regex(idPattern).nullable(),
  chain: z.array(z.string().regex(idPattern)),
  driver: z.string(),
  createdAt: z.string(),
  meta: z.record(z.string(), z.unknown()),
})

const writableSchema = z.object({
  layers: z.array(z.string().regex(idPattern)),
  from: z.string().regex(idPattern).nullable(),
  meta: z.record(z.string(), z.unknown()).default({}),
})


/** Options of createLayerStore. */
export interface LayerStoreOptions {
  dir: string
  driver: StorageDriver
  /** A snapshot whose chain would be deeper than this is squashed into one layer: deep enough that a tree search squashes seldom (each squash links the whole chain), shallow enough for short overlay lowerdir lists. @default 12 */
  maxChainDepth?: number
  logger?: Logger
}

/** Hooks of LayerStore.capture: the sandbox is frozen only while its writable dir is copied. */
export interface CaptureHooks {
  freeze(): Promise<void>
  thaw(): Promise<void>
}

/** Layers and writable dirs of one host. */
export interface LayerStore {
  readonly driver: StorageDriver
  /** Makes the writable dir of a new sandbox, empty or starting at layer `fromId`, with the quota `options.diskMiB`; `meta` is kept with it. */
  prepare(sandboxId: string, fromId: string | null, meta?: Record<string, unknown>, options?: WritableOptions): Promise<WritableDirs>
  /**
   * Makes a fresh writable layer for sandbox `sandboxId`, starting at layer `fromId`, inside its
   * writable dir (same quota) while the old one is still in use; `commit` records it in the old
   * one's place (with `meta`). Null where the driver cannot (btrfs): `prepare` a new dir instead.
   */
  renew(sandboxId: string, fromId: string, meta: Record<string, unknown>): Promise<RenewedWritable | null>
  /** What a sandbox's writable dir uses of its quota; null without a quota (or a writable dir). */
  usage(sandboxId: string): Promise<DiskUsage | null>
  /** What `prepare` was given as `meta` for a sandbox, or null if it has no writable dir here. */
  metaOf(sandboxId: string): Promise<Record<string, unknown> | null>
  /** Removes a sandbox's writable dir (after its root is unmounted). Safe to call twice. */
  release(sandboxId: string): Promise<void>
  /** Sandboxes that have a writable dir here, or the record of one (a prepare cut off by a crash). */
  sandboxes(): Promise<string[]>
  /** Turns a sandbox's writable dir into layer `id`, freezing it only while copying. */
  capture(sandboxId: string, id: string, meta: Record<string, unknown>, hooks: CaptureHooks, options?: CallOptions): Promise<LayerRecord>
  get(id: string): Promise<LayerRecord>
  /** The root of a layer, as the driver made it. */
  treeOf(id: string): string
  /** The dir of a layer to stack as an overlay `lowerdir`. */
  lowerDirOf(id: string): string
  list(): Promise<LayerRecord[]>
  /** Deletes a layer; refused (`failed_precondition`) while a layer or a sandbox stands on it. */
  remove(id: string): Promise<void>
}

/** Milliseconds spent in each named phase, for the debug log: call with a phase's name as it ends. */
function phaseTimer(): (name: string) => Record<string, number> {
  const phases: Record<string, number> = {}
  let last = performance.now()
  return (name) => {
    const now = performance.now()
    phases[name] = Math.round((now - last) * 10) / 10
    last = now
    return phases
  }
}

/** Opens the layer store in `options.dir`, removing layers that a crash left half made. */
export function createLayerStore(options: LayerStoreOptions): LayerStore {
  const { driver } = options
  const log = options.logger ?? silentLogger()
  const maxDepth = options.maxChainDepth ?? 12
  const layersDir = join(options.dir, 'layers')
  const writableDir = join(options.dir, 'writable')
  const ready = (async () => {
    await mkdir(layersDir, { recursive: true, mode: 0o700 })
    await mkdir(writableDir, { recursive: true, mode: 0o700 })
    await sweepRemovedDiskImages(options.dir)
    // What is left of a half-made or half-deleted layer. One that cannot be removed is logged and
    // left: it must not keep the store, and every sandbox of the host, from starting.
    for (const name of (await readdir(layersDir)).filter((n) => n.startsWith('.tmp-'))) {
      await driver
        .remove(join(layersDir, name, 'tree'))
        .then(() => removeAll(join(layersDir, name)))
        .catch((err: unknown) => log.error({ dir: join(layersDir, name), err }, 'could not remove what a half-made or half-deleted layer left; the next start tries again'))
    }
  })()
  ready.catch(() => undefined)

  const checkId = (id: string, what: string): string => {
    if (!idPattern.test(id)) throw new SandstormError('invalid_argument', `${what} id "${id}" is malformed`)
    return id
  }
  const treeOf = (id: string): string => join(layersDir, checkId(id, 'snapshot'), 'tree')
  // A layer's record is written once, whole, and never changed, so it is read once: every fork,
  // restore and snapshot looks it up, often more than once.
  const records = new Map<string, LayerRecord>()

  async function get(id: string): Promise<LayerRecord> {
    await ready
    const known = records.get(id)
    if (known) return known
    let raw: string
    try {
      raw = await readFile(join(layersDir, checkId(id, 'snapshot'), 'layer.json'), 'utf8')
    } catch {
      throw new SandstormError('not_found', `snapshot "${id}" not found`)
    }
    const record = layerSchema.parse(JSON.parse(raw)) as LayerRecord
    records.set(id, record)
    return record
  }

  async function list(): Promise<LayerRecord[]> {
    await ready
    const out: LayerRecord[] = []
    for (const name of await readdir(layersDir)) {
      if (!idPattern.test(name)) continue
      try {
        out.push(await get(name))
      } catch (err) {
        log.warn({ snapshotId: name, err }, 'skipping a layer without a readable record')
      }
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id))
  }

  // A writable dir's record changes only in prepare and release, here: kept once read or written,
  // so that a snapshot (which reads it twice) reads no file.
  const writables = new Map<string, z.infer<typeof writableSchema>>()

  async function readWritable(sandboxId: string): Promise<z.infer<typeof writableSchema> | null> {
    const known = writables.get(sandboxId)
    if (known) return known
    try {
      const record = writableSchema.parse(JSON.parse(await readFile(join(writableDir, `${sandboxId}.json`), 'utf8')))
      writables.set(sandboxId, record)
      return record
    } catch {
      return null
    }
  }

  return {
    driver,
    treeOf,
    lowerDirOf: (id) => driver.lowerDirOf(treeOf(id)),
    get,
    list,

    async prepare(sandboxId, fromId, meta = {}, call) {
      await ready
      const path = join(writableDir, checkId(sandboxId, 'sandbox'))
      const from = fromId === null ? null : await get(fromId)
      const source = from ? { dir: treeOf(from.id), chain: from.chain.map(treeOf) } : null
      const byLowerDir = new Map(from ? [from.id, ...from.chain].map((id) => [driver.lowerDirOf(treeOf(id)), id] as const) : [])
      // The record goes first: a crash after it leaves a dir that release() finds and removes.
      const recordFile = join(writableDir, `${sandboxId}.json`)
      writables.delete(sandboxId)
      // Synchronous, as the record in renew: a few hundred bytes, where an async write waits its turn in libuv's pool.
      writeFileSync(recordFile, JSON.stringify({ layers: from ? [from.id, ...from.chain] : [], from: fromId, meta }))
      try {
        const dirs = await driver.makeWritable(path, source, call)
        const layers = dirs.lowerDirs.map((d) => byLowerDir.get(d)!)
        writeFileSync(recordFile, JSON.stringify({ layers, from: fromId, meta }))
        writables.set(sandboxId, { layers, from: fromId, meta })
        return dirs
      } catch (err) {
        await driver.remove(path).catch(() => undefined)
        await rm(recordFile, { force: true })
        throw err
      }
    },

    async renew(sandboxId, fromId, meta) {
      await ready
      const path = join(writableDir, checkId(sandboxId, 'sandbox'))
      if (!driver.renewWritable || !(await readWritable(sandboxId))) return null
      const from = await get(fromId)
      const renewed = await driver.renewWritable(path, { dir: treeOf(from.id), chain: from.chain.map(treeOf) })
      return {
        dirs: renewed.dirs,
        abort: renewed.abort,
        async commit() {
          const record = { layers: [from.id, ...from.chain], from: fromId, meta }
          await renewed.commit()
          writeFileSync(join(writableDir, `${sandboxId}.json.tmp`), JSON.stringify(record))
          renameSync(join(writableDir, `${sandboxId}.json.tmp`), join(writableDir, `${sandboxId}.json`))
          writables.set(sandboxId, record)
        },
      }
    },

    usage: async (sandboxId) => driver.usage(join(writableDir, checkId(sandboxId, 'sandbox'))),

    async metaOf(sandboxId) {
      await ready
      return (await readWritable(checkId(sandboxId, 'sandbox')))?.meta ?? null
    },

    async release(sandboxId) {
      await ready
      await driver.remove(join(writableDir, checkId(sandboxId, 'sandbox')))
      await rm(join(writableDir, `${sandboxId}.json`), { force: true })
      // After the file is gone: a read meanwhile may have kept it again.
      writables.delete(sandboxId)
    },

    async sandboxes() {
      await ready
      // A record without its dir is a prepare that a crash cut off before the dir was made.
      const ids = (await readdir(writableDir)).map((n) => n.replace(/\.json$/, '')).filter((n) => idPattern.test(n))
      return [...new Set(ids)]
    },

    async capture(sandboxId, id, meta, hooks, call) {
      await ready
      const writablePath = join(writableDir, checkId(sandboxId, 'sandbox'))
      checkId(id, 'snapshot')
      const stacked = await readWritable(sandboxId)
      if (!stacked) throw new SandstormError('not_found', `sandbox "${sandboxId}" has no writable layer on this host`)
      const tmp = join(layersDir, `.tmp-${id}`)
      const phase = phaseTimer()
      // The few small file calls of a snapshot are synchronous (tens of microseconds each): async
      // ones cost a trip through libuv's pool and back, milliseconds on a busy host.
      // A copy must leave the host the margin its sandboxes' sparse disks need (host-room.ts): what
      // the sandbox's disk holds is refused up front when it would not, before the sandbox is
      // frozen. It may write more before the freeze (up to its quota); the margin takes that.
      if (driver.capturesByCopy) {
        const needed = (await driver.usage(writablePath))?.usedBytes ?? 0
        if (needed >= (await roomIn(layersDir))) throw diskFullError('the snapshot', undefined)
      }
      mkdirSync(tmp, { mode: 0o700 })
      try {
        // Only the overlay driver stacks chains; a btrfs layer holds everything since the template.
        const squash = stacked.layers.length + 1 > maxDepth
        const captured = squash ? join(tmp, 'top') : join(tmp, 'tree')
        phase('prepare')
        await hooks.freeze()
        phase('freeze')
        try {
          await driver.capture(writablePath, captured, call)
          phase('copy')
        } finally {
          await hooks.thaw()
          phase('thaw')
        }
        let chain = stacked.layers
        if (squash) {
          // The sandbox runs again already; squashing works on the frozen copy.
          await squashLayers([captured, ...stacked.layers].map((l) => driver.lowerDirOf(l === captured ? l : treeOf(l))), join(tmp, 'tree'), call)
          await driver.remove(captured)
          chain = []
          log.info({ snapshotId: id, depth: stacked.layers.length + 1 }, 'snapshot chain squashed into one layer')
          phase('squash')
        }
        const record: LayerRecord = { id, parentId: stacked.from, chain, driver: driver.name, createdAt: new Date().toISOString(), meta }
        writeFileSync(join(tmp, 'layer.json'), JSON.stringify(record))
        renameSync(tmp, join(layersDir, id))
        log.debug({ snapshotId: id, sandboxId, phasesMs: phase('record') }, 'layer captured')
        return record
      } catch (err) {
        await driver.remove(join(tmp, 'top')).catch(() => undefined)
        await driver.remove(join(tmp, 'tree')).catch(() => undefined)
        await removeAll(tmp)
        throw SandstormError.from(err)
      }
    },

    async remove(id) {
      const record = await get(id)
      const children = (await list()).filter((l) => l.parentId === id || l.chain.includes(id)).map((l) => l.id)
      const users: string[] = []
      for (const sandboxId of (await readdir(writableDir)).filter((n) => idPattern.test(n))) {
        if ((await readWritable(sandboxId))?.layers.includes(id)) users.push(sandboxId)
      }
      if (children.length > 0 || users.length > 0) {
        const on = [...children.map((c) => `snapshot ${c}`), ...users.map((s) => `sandbox ${s}`)]
        throw new SandstormError('failed_precondition', `snapshot "${id}" cannot be deleted: expected nothing to stand on it, but ${on.join(', ')} ${on.length === 1 ? 'does' : 'do'}; delete ${on.length === 1 ? 'it' : 'them'} first`)
      }
      // The record goes first, so that a crash mid-delete leaves no layer that claims to be whole.
      records.delete(record.id)
      const dir = join(layersDir, record.id)
      await rename(dir, join(layersDir, `.tmp-${record.id}`))
      await driver.remove(join(layersDir, `.tmp-${record.id}`, 'tree'))
      await removeAll(join(layersDir, `.tmp-${record.id}`))
      log.info({ snapshotId: id }, 'snapshot deleted')
    },
  }
}
