/**
 * The agent's side of the layer store: every sandbox's writable layer is made here (so that it
 * can be snapshotted), creates from a snapshot stack its layers, and snapshots are taken here.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import type { RootfsSpec, RuntimeBackend, SandboxNetworkSpec } from '../runtime/index.js'
import { createKeyedQueue, newId, SandstormError, silentLogger, type Logger } from '../shared/index.js'
import { createLayerStore, pickStorageDriver, type DiskUsage, type LayerRecord, type StorageDriverName, type WritableOptions } from '../storage/index.js'
import type { AgentCreateRequest } from './agent-api.js'
import { createSandboxInstances, type SandboxInstances } from './sandbox-instances.js'
import type { AgentRestoreRequest, AgentSnapshot, AgentSnapshotApi } from './snapshot-api.js'

/** Options of createSandboxLayers. */
export interface SandboxLayersOptions {
  /** Layers live in `<dataDir>/storage`. */
  dataDir: string
  /** @default 'auto': btrfs when the data dir is on btrfs, else overlay */
  driver?: StorageDriverName | 'auto'
  /** A snapshot whose chain would be deeper than this is squashed into one layer. @default the layer store's (12) */
  maxChainDepth?: number
  /** Overlay: quota disks kept formatted and mounted ahead, so that a create only moves one in. @default 0 */
  spareDisks?: number
  logger?: Logger
}

/** What is kept with each writable layer and, once captured, with each snapshot. */
const metaSchema = z.object({
  template: z.string(),
  rootfs: z.object({ lowerDirs: z.array(z.string()), readonlyBinds: z.array(z.object({ source: z.string(), target: z.string() })), allowSetuid: z.boolean().optional() }),
  memoryMiB: z.number(),
  cpus: z.number(),
  pidsMax: z.number(),
  diskMiB: z.number().default(0),
  env: z.record(z.string(), z.string()),
  cwd: z.string().default('/'),
  label: z.string().default(''),
  sandboxId: z.string().default(''),
})
type LayerMeta = z.infer<typeof metaSchema>

/** Layers of the agent's sandboxes. */
export interface SandboxLayers {
  /** The driver in use. */
  readonly driverName: string
  /** Which runtime instance (container, writable layer) runs each sandbox: a restore starts a new one. */
  readonly instances: SandboxInstances
  /**
   * Makes the writable layer of a new sandbox and returns its root: over the template, or, with
   * `req.snapshotId`, over that snapshot's layers and the template version it was taken on.
   */
  prepare(req: AgentCreateRequest, templateRootfs: RootfsSpec): Promise<{ rootfs: RootfsSpec; template: string }>
  /** Removes a sandbox's writable layer, after its root is unmounted. Safe to call twice. */
  release(sandboxId: string): Promise<void>
  /** What a sandbox's writable layer uses of its quota; null without one. */
  usage(sandboxId: string): Promise<DiskUsage | null>
  /** Removes writable layers of sandboxes that are not in `live`. */
  sweep(live: Iterable<string>): Promise<void>
  /** A snapshot's whole root: its layers, topmost first, over the template version it was taken on. */
  stackOf(snapshotId: string): Promise<{ snapshot: AgentSnapshot; rootfs: RootfsSpec; layerDirs: string[] }>
  /**
   * Snapshot operations on the sandboxes that `has` knows, run on `backend` (wrapped by
   * `instances`); restores start their new instance there, and instances that a crash left
   * retired are removed from it in the background.
   */
  snapshots(backend: RuntimeBackend, has: (sandboxId: string) => boolean, networkOf: (sandboxId: string) => SandboxNetworkSpec): AgentSnapshotApi & Required<Pick<AgentSnapshotApi, 'restore'>> & SnapshotTurns
  /** Stops the driver's background work (and removes its spare disks). */
  close(): Promise<void>
}

/** Opens the layers under `<dataDir>/storage`, picking the driver for its filesystem. */
export async function createSandboxLayers(options: SandboxLayersOptions): Promise<SandboxLayers> {
  const log = options.logger ?? silentLogger()
  const dir = join(options.dataDir, 'storage')
  const driver = await pickStorageDriver(dir, options.driver, { spareDisks: options.spareDisks ?? 0, logger: log })
  const store = createLayerStore({ dir, driver, maxChainDepth: options.maxChainDepth, logger: log })
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const instances = await createSandboxInstances(join(dir, 'instances.json'), log)
  log.info({ driver: driver.name, dir }, 'layer store open')

  const metaOf = (raw: Record<string, unknown> | null, what: string): LayerMeta => {
    const parsed = metaSchema.safeParse(raw)
    if (!parsed.success) throw new SandstormError('internal', `${what}: expected a layer record with template and config, found an unreadable one`)
    return parsed.data
  }

  const toSnapshot = (layer: LayerRecord): AgentSnapshot => {
    const meta = metaOf(layer.meta, `snapshot "${layer.id}"`)
    return {
      id: layer.id,
      parentId: layer.parentId,
      sandboxId: meta.sandboxId,
      template: meta.template,
      label: meta.label,
      driver: layer.driver,
      depth: layer.chain.length + 1,
      memoryMiB: meta.memoryMiB,
      cpus: meta.cpus,
      pidsMax: meta.pidsMax,
      diskMiB: meta.diskMiB,
      env: meta.env,
      cwd: meta.cwd,
      createdAt: layer.createdAt,
    }
  }

  /** Makes the writable layer of instance `key` of sandbox `req.id`. */
  async function prepareAs(key: string, req: AgentCreateRequest, templateRootfs: RootfsSpec | null): Promise<{ rootfs: RootfsSpec; template: string }> {
    let base = templateRootfs
    let template = req.template
    if (req.snapshotId) {
      // A snapshot stands on the template version it was taken on, whatever is current now.
      const meta = metaOf((await store.get(req.snapshotId)).meta, `snapshot "${req.snapshotId}"`)
      base = meta.rootfs
      template = meta.template
    }
    if (!base) throw new SandstormError('invalid_argument', `sandbox "${req.id}": expected a snapshot or a template root to start from, got neither`)
    const meta: LayerMeta = {
      template,
      rootfs: { lowerDirs: base.lowerDirs, readonlyBinds: base.readonlyBinds, ...setuidOf(base) },
      memoryMiB: req.memoryMiB,
      cpus: req.cpus,
      pidsMax: req.pidsMax,
      diskMiB: req.diskMiB,
      env: req.env,
      cwd: '/',
      label: '',
      sandboxId: req.id,
    }
    // 0: a sandbox made before quotas (restored or adopted), which has none.
    const dirs = await store.prepare(key, req.snapshotId ?? null, meta, diskOf(req))
    return {
      template,
      rootfs: { lowerDirs: [...dirs.lowerDirs, ...base.lowerDirs], readonlyBinds: base.readonlyBinds, ...setuidOf(base), upperDir: dirs.upperDir, workDir: dirs.workDir },
    }
  }

  return {
    driverName: driver.name,
    instances,

    prepare: (req, templateRootfs) => prepareAs(instances.layerOf(req.id), req, templateRootfs),

    usage: (sandboxId) => store.usage(instances.layerOf(sandboxId)),

    async release(sandboxId) {
      await store.release(instances.layerOf(sandboxId))
      await instances.forget(sandboxId)
    },

    async stackOf(snapshotId) {
      const layer = await store.get(snapshotId)
      const meta = metaOf(layer.meta, `snapshot "${snapshotId}"`)
      const layerDirs = [layer.id, ...layer.chain].map((id) => store.lowerDirOf(id))
      return {
        snapshot: toSnapshot(layer),
        layerDirs,
        rootfs: { lowerDirs: [...layerDirs, ...meta.rootfs.lowerDirs], readonlyBinds: meta.rootfs.readonlyBinds, ...setuidOf(meta.rootfs) },
      }
    },

    close: async () => driver.close?.(),

    async sweep(live) {
      // Retired instances are removed with their containers (snapshots()), not from under them.
      const keep = new Set([...[...live].map(instances.layerOf), ...instances.retired().map(instances.layerOfInstance)])
      for (const id of await store.sandboxes()) {
        if (keep.has(id)) continue
        await store.release(id).catch((err: unknown) => log.error({ sandboxId: id, err }, 'could not remove a leftover writable layer'))
        log.warn({ sandboxId: id }, 'removed the writable layer of a sandbox that is gone')
      }
    },

    snapshots(backend, has, networkOf) {
      // One snapshot at a time per sandbox: a second pause of a frozen sandbox would fail.
      const queue = createKeyedQueue<string>()
      async function takeOne(sandboxId: string, label: string): Promise<AgentSnapshot> {
        if (!has(sandboxId)) throw new SandstormError('not_found', `sandbox "${sandboxId}" not found`)
        const key = instances.layerOf(sandboxId)
        const meta = metaOf(await store.metaOf(key), `sandbox "${sandboxId}"`)
        let froze = false
        const layer = await store.capture(key, newId('snap'), { ...meta, label, sandboxId }, {
          async freeze() {
            try {
              if (backend.freeze) froze = await backend.freeze(sandboxId)
              else {
                await backend.pause(sandboxId)
                froze = true
              }
            } catch (err) {
              // A sandbox the user paused is frozen already, and stays so.
              const status = (await backend.list()).find((s) => s.id === sandboxId)?.status
              if (status === 'paused') return
              // A running sandbox that would not freeze: its own error says why.
              if (status === 'running') throw err
              throw new SandstormError('failed_precondition', `sandbox "${sandboxId}" is ${status ?? 'gone'}: expected a running sandbox to snapshot`, { cause: err })
            }
          },
          async thaw() {
            if (froze) await (backend.thaw ? backend.thaw(sandboxId) : backend.resume(sandboxId))
          },
        })
        log.info({ sandboxId, snapshotId: layer.id, depth: layer.chain.length + 1 }, 'snapshot taken')
        return toSnapshot(layer)
      }
      const raw = instances.unwrap(backend)
      const teardown = (instanceId: string) => async () => {
        await raw.destroy(instanceId)
        await store.release(instances.layerOfInstance(instanceId))
      }
      for (const instanceId of instances.retired()) instances.retire(instanceId, teardown(instanceId))

      /**
       * A restore: in place where the runtime can (the sandbox keeps its container, namespaces,
       * network and init; its processes end and its root switches to a new layer over the
       * snapshot's), else a new instance started beside the old one, which is removed after.
       */
      async function restoreOne(sandboxId: string, req: AgentRestoreRequest): Promise<{ template: string; inPlace?: boolean }> {
        if (!has(sandboxId)) throw new SandstormError('not_found', `sandbox "${sandboxId}" not found`)
        const startedAt = performance.now()
        const phasesMs = (how: string, preparedAt: number, switchedAt: number) => ({ how, layer: ms(startedAt, preparedAt), switch: ms(preparedAt, switchedAt), record: ms(switchedAt, performance.now()) })
        const inPlace = raw.renew ? await restoreInPlace(sandboxId, req, raw.renew.bind(raw), phasesMs) : null
        if (inPlace) return inPlace
        const next = newId('inst')
        const createReq: AgentCreateRequest = { ...req, id: sandboxId, template: '', snapshotId: req.snapshotId, network: { mode: 'none' } }
        const prepared = await prepareAs(next, createReq, null)
        const preparedAt = performance.now()
        // The old instance stops before the new one starts, and stays stopped until it is removed:
        // both are in the sandbox's network namespace, where the new init's handover socket is
        // listed (/proc/net/unix), and a process of the old one is root outside the new one's pid
        // namespace, as the agent's helper is: running, it could hand the new init a channel of its
        // own and command the restored sandbox. A failed restore starts the old one again.
        const old = instances.of(sandboxId)
        let froze = false
        try {
          froze = (await raw.freeze?.(old)) ?? false
        } catch (err) {
          // Not frozen (a task stuck in the kernel): the restore fails, and the sandbox stays as it was.
          await store.release(next).catch((e: unknown) => log.error({ sandboxId, err: e }, 'could not remove the writable layer of a failed restore'))
          throw err
        }
        const undo = async (what: string, step: () => Promise<unknown>): Promise<void> => {
          await step().catch((e: unknown) => log.error({ sandboxId, err: e }, `could not remove the ${what} of a failed restore`))
          if (froze) await raw.thaw!(old).catch((e: unknown) => log.error({ sandboxId, err: e }, 'could not thaw the old instance of a failed restore'))
        }
        try {
          await raw.create({ id: next, rootfs: prepared.rootfs, memoryMiB: req.memoryMiB, cpus: req.cpus, pidsMax: req.pidsMax, env: req.env, hostname: 'sandbox', network: networkOf(sandboxId) })
        } catch (err) {
          await undo('writable layer', () => store.release(next))
          throw err
        }
        const startedNewAt = performance.now()
        let previous: string
        try {
          previous = await instances.point(sandboxId, next)
        } catch (err) {
          await undo('new instance', () => teardown(next)())
          throw err
        }
        instances.retire(previous, teardown(previous))
        log.info({ sandboxId, snapshotId: req.snapshotId, instanceId: next, phasesMs: phasesMs('new instance', preparedAt, startedNewAt) }, 'sandbox restored')
        return { template: prepared.template }
      }

      /**
       * The sandbox keeps its container, namespaces, network and init; its processes end and its
       * root switches to a fresh layer over the snapshot's: made inside its writable dir (same
       * disk quota) where the driver can, else as a new writable dir. Null when the runtime
       * refused or failed (the caller then starts a new instance, which replaces the sandbox
       * whole), or when the snapshot's root has other read-only binds or setuid permission.
       */
      async function restoreInPlace(
        sandboxId: string,
        req: AgentRestoreRequest,
        renew: NonNullable<RuntimeBackend['renew']>,
        phasesMs: (how: string, preparedAt: number, switchedAt: number) => Record<string, unknown>,
      ): Promise<{ template: string; inPlace: true } | null> {
        const snapshotMeta = metaOf((await store.get(req.snapshotId)).meta, `snapshot "${req.snapshotId}"`)
        const layerId = instances.layerOf(sandboxId)
        const current = metaOf(await store.metaOf(layerId), `sandbox "${sandboxId}"`)
        if (!sameRootShape(current.rootfs, snapshotMeta.rootfs)) return null
        const meta: LayerMeta = { ...current, template: snapshotMeta.template, rootfs: snapshotMeta.rootfs, env: req.env, cwd: '/', label: '', sandboxId }
        const base = snapshotMeta.rootfs
        const renewed = await store.renew(layerId, req.snapshotId, meta)
        // btrfs: a writable dir of its own, recorded as the instance's layer once the switch is done.
        const next = renewed ? null : newId('inst')
        const dirs = renewed?.dirs ?? (await store.prepare(next!, req.snapshotId, meta, diskOf(req)))
        const rootfs: RootfsSpec = { lowerDirs: [...dirs.lowerDirs, ...base.lowerDirs], readonlyBinds: base.readonlyBinds, ...setuidOf(base), upperDir: dirs.upperDir, workDir: dirs.workDir }
        const preparedAt = performance.now()
        try {
          await renew(instances.of(sandboxId), rootfs, req.env, req.snapshotId)
        } catch (err) {
          await (renewed ? renewed.abort() : store.release(next!)).catch(() => undefined)
          log.warn({ sandboxId, snapshotId: req.snapshotId, err }, 'restore in place failed; a new instance replaces the sandbox')
          return null
        }
        const switchedAt = performance.now()
        if (renewed) await renewed.commit()
        else releaseLater(await instances.relayer(sandboxId, next!))
        log.info({ sandboxId, snapshotId: req.snapshotId, phasesMs: phasesMs('in place', preparedAt, switchedAt) }, 'sandbox restored')
        return { template: snapshotMeta.template, inPlace: true }
      }

      /** Whether two roots have the same read-only binds and setuid permission: a switch in place keeps both. */
      function sameRootShape(a: LayerMeta['rootfs'], b: LayerMeta['rootfs']): boolean {
        const binds = (r: LayerMeta['rootfs']) => JSON.stringify(r.readonlyBinds.map((x) => [x.source, x.target]))
        return binds(a) === binds(b) && (a.allowSetuid === true) === (b.allowSetuid === true)
      }

      /** Removes a layer that a restore in place left, off the caller's path; the next start's sweep removes one that this misses. */
      function releaseLater(layerId: string) {
        void store.release(layerId).catch((err: unknown) => log.error({ layerId, err }, 'could not remove the writable layer a restore left; the next start removes it'))
      }

      /** Runs `op` after every earlier snapshot or restore of the sandbox. */
      const queued = <T>(sandboxId: string, op: () => Promise<T>): Promise<T> => queue.run(sandboxId, op)

      return {
        inTurn: queued,
        take: (sandboxId, req) => queued(sandboxId, () => takeOne(sandboxId, req.label ?? '')),
        restore: (sandboxId, req) => queued(sandboxId, () => restoreOne(sandboxId, req)),
        get: async (id) => toSnapshot(await store.get(id)),
        list: async () => (await store.list()).map(toSnapshot),
        remove: (id) => store.remove(id),
      }
    },
  }
}

const ms = (from: number, to: number) => Math.round((to - from) * 10) / 10

/** The quota disk a create asks for, if any, and whether a spare may be it. */
const diskOf = (req: Pick<AgentCreateRequest, 'diskMiB' | 'spareDisk'>): WritableOptions =>
  req.diskMiB > 0 ? { diskMiB: req.diskMiB, ...(req.spareDisk === false ? { spare: false } : {}) } : {}

/** The order of what changes a sandbox's frozen state, per sandbox. */
export interface SnapshotTurns {
  /**
   * Runs `op` (a pause or a resume) after every earlier snapshot and restore of the sandbox, and
   * before any later one. A snapshot of a paused sandbox copies its layer while the user's freeze
   * holds it still; a resume in the midst would let it change its files under the copy (and a
   * pause in the midst of a snapshot's own freeze would be undone by the snapshot's thaw).
   */
  inTurn<T>(sandboxId: string, op: () => Promise<T>): Promise<T>
}

/** A root's setuid permission (its template's), carried to the layers and snapshots made over it. */
function setuidOf(rootfs: Pick<RootfsSpec, 'allowSetuid'>): Pick<RootfsSpec, 'allowSetuid'> {
  return rootfs.allowSetuid ? { allowSetuid: true } : {}
}
