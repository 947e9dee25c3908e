/**
 * Snapshots of machine sandboxes (qemu): the backend saves the running machine whole (memory,
 * device state, disk) into `<dataDir>/machines/<snapshotId>`, and a record beside it says what it
 * was taken of. Forks and restores start clones of it; golden templates stand on it.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import type { MachineImage, RootfsSpec, RuntimeBackend } from '../runtime/index.js'
import { idPattern, newId, SandstormError, silentLogger, type CallOptions, type Logger } from '../shared/index.js'
import type { AgentSnapshot } from './snapshot-api.js'

const recordSchema = z.object({
  id: z.string().regex(idPattern),
  parentId: z.string().nullable(),
  sandboxId: z.string(),
  template: z.string(),
  label: z.string(),
  runtime: z.string(),
  memoryMiB: z.number(),
  cpus: z.number(),
  pidsMax: z.number(),
  diskMiB: z.number().default(0),
  env: z.record(z.string(), z.string()),
  cwd: z.string(),
  createdAt: z.string(),
  /** The template root the machine was first booted from (a cold boot of its config starts there). */
  rootfs: z.object({ lowerDirs: z.array(z.string()), readonlyBinds: z.array(z.object({ source: z.string(), target: z.string() })) }),
  image: z.object({ dir: z.string(), memoryMiB: z.number(), cpus: z.number() }),
})

/** A machine snapshot as recorded: an AgentSnapshot with its runtime, root and saved image. */
export type MachineSnapshot = z.infer<typeof recordSchema> & { driver: 'machine'; depth: 1 }

/** What the server may see of a machine snapshot: no host paths. */
export function publicMachineSnapshot(s: MachineSnapshot): AgentSnapshot & { runtime: string } {
  const { rootfs: _rootfs, image: _image, ...rest } = s
  return rest
}

/** What the agent knows of the sandbox a machine snapshot is taken of. */
export interface MachineSource {
  sandboxId: string
  template: string
  runtime: string
  rootfs: Pick<RootfsSpec, 'lowerDirs' | 'readonlyBinds'>
  memoryMiB: number
  cpus: number
  pidsMax: number
  diskMiB: number
  env: Record<string, string>
  /** The machine snapshot it was cloned from, if any: the parent (its disk stands on it). */
  parentId: string | null
}

/** Machine snapshots of one agent. */
export interface MachineSnapshots {
  /** Saves the running sandbox `source` through its backend; the sandbox goes on running. */
  take(backend: RuntimeBackend, source: MachineSource, label: string, options?: CallOptions): Promise<MachineSnapshot>
  /** The snapshot, or undefined when `id` is no machine snapshot (it may be a layer snapshot). */
  find(id: string): Promise<MachineSnapshot | undefined>
  list(): Promise<MachineSnapshot[]>
  /** Frees the snapshot's directory; `failed_precondition` while a child snapshot or anything `standing(id)` names stands on it. */
  remove(id: string, standing: (id: string) => string[]): Promise<void>
}

/** Opens the machine snapshots under `dir` (`<dataDir>/machines`). */
export function createMachineSnapshots(dir: string, logger: Logger = silentLogger()): MachineSnapshots {
  const recordPath = (id: string) => join(dir, `${id}.json`)
  const toSnapshot = (record: z.infer<typeof recordSchema>): MachineSnapshot => ({ ...record, driver: 'machine', depth: 1 })
  // Removes and takes are serialized: a take of a clone must not race the removal of its parent.
  let queue: Promise<unknown> = Promise.resolve()
  const serial = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work)
    queue = run.catch(() => undefined)
    return run
  }

  async function find(id: string): Promise<MachineSnapshot | undefined> {
    if (!idPattern.test(id)) return undefined
    let text: string
    try {
      text = await readFile(recordPath(id), 'utf8')
    } catch {
      return undefined
    }
    const parsed = recordSchema.safeParse(JSON.parse(text))
    if (!parsed.success) throw new SandstormError('internal', `machine snapshot "${id}": expected a record with its image and config, found an unreadable one`)
    return toSnapshot(parsed.data)
  }

  async function list(): Promise<MachineSnapshot[]> {
    const names = await readdir(dir).catch(() => [] as string[])
    const out: MachineSnapshot[] = []
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const found = await find(name.slice(0, -'.json'.length)).catch((err: unknown) => {
        logger.error({ file: name, err }, 'skipping an unreadable machine snapshot record')
        return undefined
      })
      if (found) out.push(found)
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id))
  }

  return {
    take(backend, source, label, call) {
      return serial(async () => {
        if (!backend.saveMachine) throw new SandstormError('failed_precondition', `runtime "${backend.name}" cannot save machines: expected a machine runtime (qemu)`)
        await mkdir(dir, { recursive: true, mode: 0o700 })
        const id = newId('snap')
        const imageDir = join(dir, id)
        try {
          const image: MachineImage = await backend.saveMachine(source.sandboxId, imageDir, call)
          const record = recordSchema.parse({
            id,
            parentId: source.parentId,
            sandboxId: source.sandboxId,
            template: source.template,
            label,
            runtime: source.runtime,
            memoryMiB: image.memoryMiB,
            cpus: image.cpus,
            pidsMax: source.pidsMax,
            diskMiB: source.diskMiB,
            env: source.env,
            cwd: '/',
            createdAt: new Date().toISOString(),
            rootfs: { lowerDirs: source.rootfs.lowerDirs, readonlyBinds: source.rootfs.readonlyBinds },
            image: { dir: image.dir, memoryMiB: image.memoryMiB, cpus: image.cpus },
          })
          // Written whole or not at all: a crash leaves a directory without a record, which `list` skips.
          await writeFile(`${recordPath(id)}.tmp`, JSON.stringify(record), { mode: 0o600 })
          await rename(`${recordPath(id)}.tmp`, recordPath(id))
          logger.info({ sandboxId: source.sandboxId, snapshotId: id, memoryMiB: image.memoryMiB, cpus: image.cpus }, 'machine saved')
          return toSnapshot(record)
        } catch (err) {
          await rm(imageDir, { recursive: true, force: true }).catch(() => undefined)
          await rm(`${recordPath(id)}.tmp`, { force: true })
          throw SandstormError.from(err)
        }
      })
    },

    find,

    list,

    remove(id, standing) {
      return serial(async () => {
        const found = await find(id)
        if (!found) throw new SandstormError('not_found', `snapshot "${id}" not found`)
        // A clone's disk is an overlay over its parent's: child snapshots stand on it too.
        const children = (await list()).filter((s) => s.parentId === id).map((s) => `snapshot ${s.id}`)
        const on = [...standing(id), ...children]
        if (on.length > 0) {
          throw new SandstormError('failed_precondition', `snapshot "${id}" cannot be deleted: expected nothing to stand on it, but ${on.join(', ')} ${on.length === 1 ? 'does' : 'do'}`)
        }
        // The record goes first: a crash between the two leaves a directory that nothing lists.
        await rm(recordPath(id), { force: true })
        await rm(found.image.dir, { recursive: true, force: true })
        logger.info({ snapshotId: id }, 'machine snapshot deleted')
      })
    },
  }
}
