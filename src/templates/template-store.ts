/**
 * The template store: named, versioned, read-only root filesystems under one directory.
 *
 *   <dir>/<name>/<version>/rootfs/         the tree
 *   <dir>/<name>/<version>/template.json   its TemplateInfo (and the binds it needs)
 *   <dir>/<name>/current -> <version>      switched atomically (a new symlink renamed over)
 *
 * A build fills `<dir>/.build-<name>-<random>` and renames it into place only when complete, so a
 * half-made template is never listed; what a crash leaves is removed when a store is next created.
 */
import { randomBytes } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { chmod, mkdir, readdir, rename, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { createKeyedQueue, SandstormError, silentLogger, throwIfAborted, type Logger, type TemplateInfo, type TemplateSource, type TemplateStart } from '../shared/index.js'
import type { Digest, ImageDefaults, ImageLayerStore, LayerChain } from '../images/contracts.js'
import { createImageLayerStore } from '../images/layers/index.js'
import type { RootfsSpec } from '../runtime/backend.js'
import { acquireBuildLock } from './build-lock.js'
import { baseRecipe } from './base-recipe.js'
import { codeInterpreterRecipe } from './code-interpreter-recipe.js'
import { debianRecipe } from './debian-recipe.js'
import { hostRecipe } from './host-recipe.js'
import type { TemplateRecipe } from './recipe.js'
import { checkTemplateName, templateNamePattern } from './template-name.js'
import { removeLeftovers } from './leftovers.js'
import { removeTree, treeSizeBytes } from './tree.js'
import { createTemplateVersions, nextVersion, toInfo, versionsOf, type StoredTemplate } from './template-versions.js'

/** Options of createTemplateStore. */
export interface TemplateStoreOptions {
  /** Directory holding all templates; made if missing. */
  dir: string
  /** @default silentLogger() */
  logger?: Logger
}

/** Options of TemplateStore.build. */
export interface TemplateBuildOptions {
  /** Gets each progress line (debootstrap's `I: Retrieving ...` lines, for instance). */
  onProgress?: (line: string) => void
  /** Cancels the build; nothing of it is left behind. */
  signal?: AbortSignal
  /** Build a new version even if one exists, and make it current. @default false */
  force?: boolean
  /** Debian mirror URL. @default process.env.SANDSTORM_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian' */
  mirror?: string
}

/** A template ready to start sandboxes from. */
export interface ResolvedTemplate {
  info: TemplateInfo
  rootfs: RootfsSpec
  /** An image template's layers in the image layer store, bottom first. */
  layerIds?: string[]
}

/** Lists, resolves and builds templates. */
export interface TemplateStore {
  /** Templates that are built, the current version of each, sorted by name. */
  list(): Promise<TemplateInfo[]>
  /** The current version of a template; not_found if it is not built. */
  resolve(name: string): Promise<ResolvedTemplate>
  /** Builds a default template ('base' | 'code-interpreter-v1' | 'debian' | 'host'); a no-op returning the existing one unless `force`. */
  build(name: string, options?: TemplateBuildOptions): Promise<TemplateInfo>
  /** Adds a version of `name` whose root is a stack of layers (a golden template) and makes it current. */
  promote(name: string, spec: GoldenVersionSpec): Promise<TemplateInfo>
  /** Makes the version before the current one current; `failed_precondition` when there is none. */
  rollback(name: string): Promise<TemplateInfo>
  /** Versions (as `name vN`) that stand on snapshot `snapshotId`, current or kept for rollback. */
  standingOn(snapshotId: string): Promise<string[]>
  /** The layers that image and Dockerfile templates are made of, each stored once (`<dir>/.layers`). */
  readonly imageLayers: ImageLayerStore
  /** Runs an image build: the layers it touches are kept from a delete's sweep until it ends. */
  whileBuilding<T>(work: () => Promise<T>): Promise<T>
  /**
   * Marks `name` as the base of a build in progress (a Dockerfile's FROM): a remove of it is
   * refused until no build runs, as its root is mounted under the build's steps.
   */
  holdForBuild(name: string): void
  /** Adds a version of `name` whose root is a chain of image layers, and makes it current. */
  addImageVersion(name: string, spec: ImageVersionSpec): Promise<TemplateInfo>
  /**
   * Removes every version of `name`, then those of its image layers that no other template, no
   * dir of `keepDirs` and no build in progress stands on. not_found when there is none.
   */
  remove(name: string, keepDirs?: Iterable<string>): Promise<{ removedLayers: number }>
  /** Removes every image layer no template stands on (the build cache of Dockerfile steps included). */
  prune(keepDirs?: Iterable<string>): Promise<{ removedLayers: number }>
}

/** A template version made from an image or a Dockerfile. */
export interface ImageVersionSpec {
  chain: LayerChain
  defaults: ImageDefaults
  source: TemplateSource
  description: string
  /** Memory and CPUs of its sandboxes. @default 512 MiB, 1 CPU */
  resources?: { memoryMiB?: number; cpus?: number; diskMiB?: number }
  start?: TemplateStart
  buildMs: number
}

/** A golden template version: layers over a base template, and the config it was made with. */
export interface GoldenVersionSpec {
  /** Its root: the snapshot's layers, topmost first, then the base template's. */
  rootfs: Pick<RootfsSpec, 'lowerDirs' | 'readonlyBinds' | 'allowSetuid'>
  /** The config (memory, cpus, disk quota) of the sandbox the snapshot was taken of. */
  defaults: { memoryMiB: number; cpus: number; diskMiB?: number }
  baseTemplate: string
  snapshotId: string
  /** Bytes of the snapshot's own layers. */
  sizeBytes: number
  description: string
  /** What its sandboxes run at create: the base template's, unless the promote names another. */
  start?: TemplateStart
}

/** Options for tests only (not exported from index.ts): replace the recipes. */
export interface TemplateStoreInternals {
  recipes?: Record<string, TemplateRecipe>
}

/** Opens the template store in `options.dir`, removing what crashed builds left there. */
export function createTemplateStore(options: TemplateStoreOptions & TemplateStoreInternals): TemplateStore {
  const dir = resolve(options.dir)
  const logger = options.logger ?? silentLogger()
  const recipes = options.recipes ?? { base: baseRecipe, 'code-interpreter-v1': codeInterpreterRecipe, debian: debianRecipe, host: hostRecipe }
  const buildable = Object.keys(recipes).sort()
  // Builds of one name run one after another in this process; the lock file covers other processes.
  const queue = createKeyedQueue<string>()
  // Layers a build in progress has used are not yet recorded by a template: a delete's sweep keeps
  // every layer touched while any build runs (cleared once none does).
  let buildsRunning = 0
  const touched = new Set<string>()
  const heldForBuilds = new Set<string>()
  const touch = <T extends { id: string } | null>(layer: T): T => {
    if (layer && buildsRunning > 0) touched.add(layer.id)
    return layer
  }
  const rawLayers = createImageLayerStore({ dir: join(dir, '.layers'), logger })
  const imageLayers: ImageLayerStore = {
    dir: rawLayers.dir,
    ensure: async (id, mediaType, open, opts) => touch(await rawLayers.ensure(id, mediaType, open, opts)),
    create: async (id, fill, opts) => touch(await rawLayers.create(id, fill, opts)),
    get: async (id) => touch(await rawLayers.get(id)),
    sweep: (keep) => rawLayers.sweep(keep),
  }
  async function whileBuilding<T>(work: () => Promise<T>): Promise<T> {
    buildsRunning++
    try {
      return await work()
    } finally {
      if (--buildsRunning === 0) {
        touched.clear()
        heldForBuilds.clear()
      }
    }
  }
  const { readCurrent, readVersion, readVersionOrNull, allVersions, switchCurrent } = createTemplateVersions(dir)
  const ready = removeLeftovers(dir, logger)
  // Every method awaits `ready` and so reports its failure; this only keeps it from being unhandled.
  ready.catch(() => undefined)

  /** The current version of every template, sorted by name (unreadable ones skipped). */
  async function currentVersions(): Promise<StoredTemplate[]> {
    await ready
    const names = readdirSync(dir, { withFileTypes: true })
      .filter((entry) => (entry.isDirectory() || entry.isSymbolicLink()) && templateNamePattern.test(entry.name))
      .map((entry) => entry.name)
    const read = names.map((name) => {
      try {
        return readCurrent(name)
      } catch (err) {
        // One broken template must not hide the others.
        logger.warn({ template: name, err }, 'skipping a template that cannot be read')
        return null
      }
    })
    return read.flatMap((current) => (current ? [current.stored] : [])).sort((a, b) => a.name.localeCompare(b.name))
  }

  /**
   * The templates, each image template with the bytes of its layers that another template stands
   * on too. Every create lists templates: the other versions are read only when there are layers.
   */
  async function list(): Promise<TemplateInfo[]> {
    const current = await currentVersions()
    if (!current.some((t) => t.layers?.length)) return current.map(toInfo)
    const users = new Map<string, Set<string>>()
    for (const stored of await allVersions()) {
      for (const id of stored.layers ?? []) users.set(id, (users.get(id) ?? new Set()).add(stored.name))
    }
    const out: TemplateInfo[] = []
    for (const stored of current) {
      if (!stored.layers) {
        out.push(toInfo(stored))
        continue
      }
      let shared = 0
      for (const id of stored.layers) if ((users.get(id)?.size ?? 0) > 1) shared += (await imageLayers.get(id as Digest))?.sizeBytes ?? 0
      out.push({ ...toInfo(stored), sharedBytes: shared })
    }
    return out
  }

  async function resolveTemplate(name: string): Promise<ResolvedTemplate> {
    checkTemplateName(name)
    await ready
    const current = readCurrent(name)
    if (!current) {
      const built = (await list()).map((t) => t.name)
      const hint = buildable.includes(name) ? `; build it with \`sandstorm template build ${name}\`` : ''
      const expected = built.length > 0 ? `expected one of ${built.join(', ')}` : 'no template is built yet'
      throw new SandstormError('not_found', `unknown template "${name}": ${expected}${hint}`)
    }
    return {
      info: toInfo(current.stored),
      rootfs: {
        lowerDirs: current.stored.lowerDirs ?? [join(current.versionDir, 'rootfs')],
        readonlyBinds: current.stored.readonlyBinds,
        ...(current.stored.allowSetuid ? { allowSetuid: true } : {}),
      },
      ...(current.stored.layers ? { layerIds: [...current.stored.layers] } : {}),
    }
  }

  async function build(name: string, buildOptions: TemplateBuildOptions = {}): Promise<TemplateInfo> {
    checkTemplateName(name)
    const recipe = recipes[name]
    if (!recipe) {
      throw new SandstormError('invalid_argument', `cannot build template "${name}": expected one of ${buildable.join(', ')}`)
    }
    await ready
    return inQueue(name, () => buildOne(name, recipe, buildOptions))
  }

  /** Runs `work` after every earlier build, promote or rollback of `name` in this process. */
  function inQueue<T>(name: string, work: () => Promise<T>): Promise<T> {
    return queue.run(name, work)
  }

  async function buildOne(name: string, recipe: TemplateRecipe, buildOptions: TemplateBuildOptions): Promise<TemplateInfo> {
    const { signal, force = false } = buildOptions
    throwIfAborted(signal)
    if (!force) {
      const existing = readCurrent(name)
      if (existing) return toInfo(existing.stored)
    }
    const lock = await acquireBuildLock(dir, name)
    try {
      if (!force) {
        // Another process may have finished the same build while we waited for the lock.
        const existing = readCurrent(name)
        if (existing) return toInfo(existing.stored)
      }
      const info = await buildIntoPlace(name, recipe, buildOptions)
      await switchCurrent(name, info.version)
      logger.info({ template: name, version: info.version, sizeBytes: info.sizeBytes, buildMs: info.buildMs }, 'template built')
      return info
    } finally {
      await lock.release()
    }
  }

  /** Builds in a temp dir and renames it to `<dir>/<name>/<version>`; on any failure removes it. */
  async function buildIntoPlace(name: string, recipe: TemplateRecipe, buildOptions: TemplateBuildOptions): Promise<TemplateInfo> {
    const { signal } = buildOptions
    const startedMs = Date.now()
    const tmp = join(dir, `.build-${name}-${randomBytes(4).toString('hex')}`)
    logger.info({ template: name, tmp }, 'building template')
    try {
      const rootfs = join(tmp, 'rootfs')
      await mkdir(rootfs, { recursive: true })
      await chmod(rootfs, 0o755)
      await recipe.build(rootfs, {
        name,
        logger,
        onProgress: buildOptions.onProgress ?? (() => undefined),
        signal,
        mirror: buildOptions.mirror,
      })
      throwIfAborted(signal)
      const fingerprint = recipe.fingerprint ? await recipe.fingerprint(rootfs) : undefined
      const sizeBytes = await treeSizeBytes(rootfs)
      await mkdir(join(dir, name), { recursive: true })
      const version = await nextVersion(join(dir, name))
      const stored: StoredTemplate = {
        name,
        version,
        description: recipe.description,
        sizeBytes,
        buildMs: Date.now() - startedMs,
        builtAt: new Date().toISOString(),
        defaults: { ...recipe.defaults },
        readonlyBinds: recipe.readonlyBinds.map((b) => ({ ...b })),
        ...(recipe.start ? { start: recipe.start } : {}),
        ...(recipe.allowSetuid ? { allowSetuid: true } : {}),
        ...(fingerprint !== undefined ? { fingerprint } : {}),
      }
      await writeFile(join(tmp, 'template.json'), `${JSON.stringify(stored, null, 2)}\n`)
      throwIfAborted(signal)
      await rename(tmp, join(dir, name, String(version)))
      return toInfo(stored)
    } catch (err) {
      await removeTree(tmp).catch((rmErr: unknown) => logger.error({ template: name, tmp, err: rmErr }, 'could not remove a failed build'))
      // A step that failed because of the cancel says so, rather than how it happened to die.
      if (signal?.aborted) throwIfAborted(signal)
      throw SandstormError.from(err)
    }
  }

  /** Runs `work` under the queue of `name` and its lock file (shared with other processes). */
  async function exclusive<T>(name: string, work: () => Promise<T>): Promise<T> {
    checkTemplateName(name)
    await ready
    return inQueue(name, async () => {
      const lock = await acquireBuildLock(dir, name)
      try {
        return await work()
      } finally {
        await lock.release()
      }
    })
  }

  /**
   * Adds the next version of `name`, made of the template.json that `make` gives for its number
   * and no tree of its own (its root is layers elsewhere), and makes it current.
   */
  async function addVersion(name: string, make: (version: number) => Promise<StoredTemplate>): Promise<StoredTemplate> {
    return exclusive(name, async () => {
      const tmp = join(dir, `.build-${name}-${randomBytes(4).toString('hex')}`)
      try {
        await mkdir(tmp)
        await mkdir(join(dir, name), { recursive: true })
        const version = await nextVersion(join(dir, name))
        const stored = await make(version)
        await writeFile(join(tmp, 'template.json'), `${JSON.stringify(stored, null, 2)}\n`)
        await rename(tmp, join(dir, name, String(version)))
        await switchCurrent(name, version)
        return stored
      } catch (err) {
        await removeTree(tmp).catch(() => undefined)
        throw SandstormError.from(err)
      }
    })
  }

  async function promote(name: string, spec: GoldenVersionSpec): Promise<TemplateInfo> {
    const stored = await addVersion(name, async (version) => ({
      name,
      version,
      description: spec.description,
      sizeBytes: spec.sizeBytes,
      buildMs: 0,
      builtAt: new Date().toISOString(),
      defaults: { ...spec.defaults },
      readonlyBinds: spec.rootfs.readonlyBinds.map((b) => ({ ...b })),
      lowerDirs: [...spec.rootfs.lowerDirs],
      baseTemplate: spec.baseTemplate,
      snapshotId: spec.snapshotId,
      ...(spec.start ? { start: spec.start } : {}),
      ...(spec.rootfs.allowSetuid ? { allowSetuid: true } : {}),
    }))
    logger.info({ template: name, version: stored.version, snapshotId: spec.snapshotId }, 'snapshot promoted to a template version')
    return toInfo(stored)
  }

  async function rollback(name: string): Promise<TemplateInfo> {
    return exclusive(name, async () => {
      const current = readCurrent(name)
      if (!current) throw new SandstormError('not_found', `unknown template "${name}": nothing to roll back`)
      const older = (await versionsOf(join(dir, name))).filter((v) => v < current.stored.version)
      const previous = older.at(-1)
      if (previous === undefined) {
        throw new SandstormError('failed_precondition', `template "${name}" is at version ${current.stored.version}: expected an older version to roll back to, found none`)
      }
      const target = readVersion(name, String(previous))
      await switchCurrent(name, previous)
      logger.info({ template: name, from: current.stored.version, to: previous }, 'template rolled back')
      return toInfo(target.stored)
    })
  }

  async function standingOn(snapshotId: string): Promise<string[]> {
    await ready
    return (await allVersions()).filter((v) => v.snapshotId === snapshotId).map((v) => `${v.name} v${v.version}`)
  }

  async function addImageVersion(name: string, spec: ImageVersionSpec): Promise<TemplateInfo> {
    let sizeBytes = 0
    for (const id of spec.chain.layerIds) sizeBytes += (await imageLayers.get(id))?.sizeBytes ?? 0
    const stored = await addVersion(name, async (version) => ({
      name,
      version,
      description: spec.description,
      sizeBytes,
      buildMs: spec.buildMs,
      builtAt: new Date().toISOString(),
      defaults: { memoryMiB: spec.resources?.memoryMiB ?? 512, cpus: spec.resources?.cpus ?? 1, ...(spec.resources?.diskMiB ? { diskMiB: spec.resources.diskMiB } : {}) },
      readonlyBinds: spec.chain.readonlyBinds.map((b) => ({ ...b })),
      lowerDirs: [...spec.chain.lowerDirs],
      layers: [...spec.chain.layerIds],
      source: spec.source,
      config: spec.defaults,
      ...(spec.start ? { start: spec.start } : {}),
      ...(spec.chain.allowSetuid ? { allowSetuid: true } : {}),
    }))
    logger.info({ template: name, version: stored.version, source: spec.source, layers: spec.chain.layerIds.length }, 'image template version added')
    return toInfo(stored)
  }

  async function remove(name: string, keepDirs: Iterable<string> = []): Promise<{ removedLayers: number }> {
    const candidates = new Set<string>()
    await exclusive(name, async () => {
      if (!readCurrent(name)) throw new SandstormError('not_found', `unknown template "${name}": nothing to delete`)
      if (heldForBuilds.has(name)) throw new SandstormError('failed_precondition', `template "${name}" is the base of a build in progress: delete it once the build has ended`)
      for (const version of await versionsOf(join(dir, name))) {
        const found = readVersionOrNull(name, String(version))
        for (const id of found ? layerIdsOf(found.stored) : []) candidates.add(id)
      }
      // The name's dir leaves the listing at once (a rename), then its tree goes.
      const doomed = join(dir, `.build-${name}-removed-${randomBytes(4).toString('hex')}`)
      await rename(join(dir, name), doomed)
      await removeTree(doomed)
      logger.info({ template: name }, 'template deleted')
    })
    // Only the deleted template's layers go, and only those nothing else stands on: the build
    // cache of other Dockerfile builds stays (prune clears it).
    return { removedLayers: await sweepLayers(keepDirs, (id) => !candidates.has(id)) }
  }

  async function prune(keepDirs: Iterable<string> = []): Promise<{ removedLayers: number }> {
    await ready
    return { removedLayers: await sweepLayers(keepDirs, () => false) }
  }

  /** The image layers a version stands on: its own list, and (golden versions) its layer dirs. */
  function layerIdsOf(stored: StoredTemplate): string[] {
    const layersDir = `${imageLayers.dir}/`
    const fromDirs = (stored.lowerDirs ?? []).filter((d) => d.startsWith(layersDir)).map((d) => `sha256:${d.slice(layersDir.length).split('/')[0]!}`)
    return [...(stored.layers ?? []), ...fromDirs]
  }

  /**
   * Removes stored layers that no version of any template, no dir of `keepDirs` and no build in
   * progress stands on, except those `spare` says to leave; returns how many went.
   */
  async function sweepLayers(keepDirs: Iterable<string>, spare: (id: string) => boolean): Promise<number> {
    const keep = new Set<string>()
    for (const stored of await allVersions()) for (const id of layerIdsOf(stored)) keep.add(id)
    for (const id of layerIdsOf({ lowerDirs: [...keepDirs] } as StoredTemplate)) keep.add(id)
    for (const id of touched) keep.add(id)
    const stored = (await readdir(imageLayers.dir).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{64}$/.test(n)).map((hex) => `sha256:${hex}`)
    for (const id of stored) if (spare(id)) keep.add(id)
    return (await imageLayers.sweep(keep)).length
  }

  const holdForBuild = (name: string): void => void (buildsRunning > 0 && heldForBuilds.add(name))
  return { list, resolve: resolveTemplate, build, promote, rollback, standingOn, imageLayers, whileBuilding, holdForBuild, addImageVersion, remove, prune }
}
