/**
 * Image template builds on the server: the source a client names (an image, an uploaded archive,
 * a Dockerfile and its uploaded context, a template) handed to the agent, whose events go to the
 * caller; uploads land in a temp dir under the data dir that goes when the build ends.
 */
import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { lstat, mkdir, readFile, rm } from 'node:fs/promises'
import { join, normalize } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { AgentApi, ImageBuildRequest } from '../agent/index.js'
import { unpackTar } from '../images/layers/index.js'
import { defaultEgressPolicy, SandstormError, type DefaultEgress, type Logger, type RegistryAuth, type TemplateBuildEvent, type TemplateStartInput } from '../shared/index.js'
import { templateStartSchema } from '../shared/index.js'
import { inodesOrRefuse, roomBudget, roomOrRefuse, withinRoom, type RoomOf } from '../storage/index.js'
import { capBytes } from './body-limits.js'
import { createBuildRuns, defaultBuildTimeoutMs, type BuildRuns } from './build-runs.js'
import { hiddenMessage } from './request-context.js'

/** Where a server-side build starts from. */
export type ImageBuildSource =
  | { kind: 'image'; image: string; credentials?: RegistryAuth }
  | { kind: 'template'; template: string }
  | { kind: 'dockerfile'; contextDir: string; dockerfile: string; buildArgs?: Record<string, string>; noCache?: boolean }
  | { kind: 'archive'; path: string }

/** What every build may add: its sandboxes' resources and start command. */
export interface ImageBuildSettings {
  start?: TemplateStartInput
  memoryMiB?: number
  cpus?: number
}

/** Builds image templates through the agent. */
export interface ImageBuildService {
  /**
   * Runs a build, giving each event to `emit`; the last is `done` or `error`. Never rejects. Past
   * the server's build deadline it fails with deadline_exceeded; the error event comes once its
   * build sandbox and whatever it made are gone.
   */
  build(name: string, source: ImageBuildSource & ImageBuildSettings, emit: (event: TemplateBuildEvent) => void, signal: AbortSignal): Promise<void>
  /** A temp dir for one build's uploads, removed by `release`. */
  scratch(): Promise<{ dir: string; release: () => Promise<void> }>
  /** Writes an uploaded tar to `<dir>/upload.tar` (at most `maxUploadBytes`). */
  receiveFile(body: AsyncIterable<Uint8Array>, dir: string): Promise<string>
  /** Unpacks an uploaded build context into `<dir>/context` (no path leaves it, no device nodes). */
  receiveContext(body: AsyncIterable<Uint8Array>, dir: string, signal?: AbortSignal): Promise<string>
  /** The text of the Dockerfile at `path` inside an unpacked context; invalid_argument when it is not a regular file there. */
  readDockerfile(contextDir: string, path: string): Promise<string>
  /**
   * Runs `work` among the builds of `name` (what comes before `build`, such as unpacking a build's
   * uploaded files): a delete of the template stops it, and the build deadline bounds it.
   */
  track<T>(name: string, signal: AbortSignal, work: (signal: AbortSignal) => Promise<T>): Promise<T>
  /** Stops the builds of `name` under way (waiting until they have ended), then deletes the template and the layers nothing else stands on. */
  remove(name: string, signal?: AbortSignal): Promise<{ removedLayers: number }>
  /** Removes the image layers no template stands on (the build cache among them). */
  prune(signal?: AbortSignal): Promise<{ removedLayers: number }>
}

/** Options of createImageBuildService. */
export interface ImageBuildServiceOptions {
  agent: AgentApi
  dataDir: string
  logger: Logger
  /** The most an upload (an archive or a context) may be. @default 8 GiB */
  maxUploadBytes?: number
  /** The room an upload may take on the data dir's disk. @default roomIn: the free space less the host's margin */
  roomOf?: RoomOf
  /** The server's egress for creates that name none, which RUN steps get too. @default 'all' */
  defaultEgress?: DefaultEgress
  /** The registry of running builds to join, under its deadline (the server's, shared with builds from steps). @default one of its own, under the default deadline */
  runs?: BuildRuns
}

/** Creates the service over the agent's image API. */
export function createImageBuildService(options: ImageBuildServiceOptions): ImageBuildService {
  const { agent, logger } = options
  const maxUploadBytes = options.maxUploadBytes ?? 8 * 1024 ** 3
  const uploadsDir = join(options.dataDir, 'uploads')
  const roomOf = options.roomOf
  // RUN steps name no network: they get what a create that names none gets.
  const egress = defaultEgressPolicy(options.defaultEgress ?? 'all')
  const runs = options.runs ?? createBuildRuns({ timeoutMs: defaultBuildTimeoutMs })
  // What a crash left of earlier builds' uploads.
  void rm(uploadsDir, { recursive: true, force: true }).catch(() => undefined)

  const images = () => {
    if (!agent.images) throw new SandstormError('failed_precondition', 'this agent cannot build image templates: expected the local agent of `sandstorm up`')
    return agent.images
  }

  async function scratch() {
    await mkdir(uploadsDir, { recursive: true, mode: 0o700 })
    const dir = join(uploadsDir, randomBytes(8).toString('hex'))
    await mkdir(dir, { mode: 0o700 })
    return { dir, release: () => rm(dir, { recursive: true, force: true }) }
  }

  async function build(name: string, source: ImageBuildSource & ImageBuildSettings, emit: (event: TemplateBuildEvent) => void, signal: AbortSignal): Promise<void> {
    let last: TemplateBuildEvent
    const temp: { release: () => Promise<void> }[] = []
    try {
      const settings = {
        ...(source.memoryMiB ? { memoryMiB: source.memoryMiB } : {}),
        ...(source.cpus ? { cpus: source.cpus } : {}),
        ...(source.start ? { start: templateStartSchema.parse(source.start) } : {}),
      }
      let req: ImageBuildRequest
      if (source.kind === 'template') {
        // A template alone: a Dockerfile of one FROM over an empty context.
        const s = await scratch()
        temp.push(s)
        const contextDir = join(s.dir, 'context')
        await mkdir(contextDir)
        req = { kind: 'dockerfile', dockerfile: `FROM ${source.template}\n`, contextDir, egress, ...settings }
      } else if (source.kind === 'image') {
        req = { kind: 'image', image: source.image, ...(source.credentials ? { credentials: source.credentials } : {}), ...settings }
      } else if (source.kind === 'archive') {
        req = { kind: 'archive', path: source.path, ...settings }
      } else {
        req = { kind: 'dockerfile', dockerfile: source.dockerfile, contextDir: source.contextDir, egress, ...(source.buildArgs ? { buildArgs: source.buildArgs } : {}), ...(source.noCache ? { noCache: true } : {}), ...settings }
      }
      const template = await images().build(name, req, emit, { signal })
      last = { type: 'done', template }
    } catch (err) {
      // Stopped: the reason says by what (the deadline, a delete, a newer build, the client gone).
      const reason: unknown = signal.aborted ? signal.reason : undefined
      const e = !signal.aborted ? SandstormError.from(err) : reason instanceof SandstormError ? reason : new SandstormError('canceled', `build of template "${name}" was cancelled`)
      logger.warn({ template: name, err: e }, 'image template build failed')
      const step = (err as { step?: unknown } | null)?.step
      last = { type: 'error', code: e.code, message: e.expose ? e.message : hiddenMessage(), ...(step ? { step: step as never } : {}) }
    } finally {
      for (const t of temp) await t.release().catch(() => undefined)
    }
    emit(last)
  }

  /** The room on the disk of `dir` (the data dir's, where the sandboxes' disks are too); none: refused. */
  const roomFor = (dir: string, what: string): Promise<number> => roomOrRefuse(dir, what, roomOf)

  async function receiveFile(body: AsyncIterable<Uint8Array>, dir: string): Promise<string> {
    const path = join(dir, 'upload.tar')
    const what = 'receiving the image archive'
    const room = await roomFor(dir, what)
    try {
      await pipeline(Readable.from(withinRoom(capUpload(body), room, what)), createWriteStream(path, { mode: 0o600 }))
    } catch (err) {
      await rm(path, { force: true })
      throw err
    }
    return path
  }

  async function receiveContext(body: AsyncIterable<Uint8Array>, dir: string, signal?: AbortSignal): Promise<string> {
    const contextDir = join(dir, 'context')
    const what = 'unpacking the build context'
    const room = roomBudget(await roomFor(dir, what), what, await inodesOrRefuse(dir, what))
    await mkdir(contextDir, { mode: 0o700 })
    try {
      await unpackTar(Readable.from(capUpload(body)), contextDir, { whiteouts: false, label: 'the build context', maxLayerBytes: maxUploadBytes, room, ...(signal ? { signal } : {}) })
    } catch (err) {
      await rm(contextDir, { recursive: true, force: true })
      throw err
    }
    return contextDir
  }

  async function* capUpload(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    try {
      yield* capBytes(body, maxUploadBytes)
    } catch (err) {
      if (err instanceof SandstormError && err.code === 'payload_too_large') throw new SandstormError('payload_too_large', `upload too large: expected at most ${maxUploadBytes} bytes`)
      throw err
    }
  }

  async function readDockerfile(contextDir: string, path: string): Promise<string> {
    const rel = normalize(path)
    if (rel.startsWith('/') || rel === '..' || rel.startsWith('../')) throw new SandstormError('invalid_argument', `dockerfile: expected a path inside the context, got "${path}"`)
    // Each component is checked: a symlink in the (untrusted) context must not lead outside it.
    let at = contextDir
    for (const part of rel.split('/')) {
      at = join(at, part)
      const st = await lstat(at).catch(() => null)
      if (!st) throw new SandstormError('invalid_argument', `dockerfile: expected "${path}" in the build context, found no such file`)
      if (st.isSymbolicLink()) throw new SandstormError('invalid_argument', `dockerfile: expected "${path}" to be a file in the context, found a symlink`)
    }
    const st = await lstat(at)
    if (!st.isFile()) throw new SandstormError('invalid_argument', `dockerfile: expected "${path}" to be a regular file, found something else`)
    if (st.size > 1024 * 1024) throw new SandstormError('invalid_argument', `dockerfile: expected at most 1 MiB, got ${st.size} bytes`)
    return readFile(at, 'utf8')
  }

  async function remove(name: string, signal?: AbortSignal): Promise<{ removedLayers: number }> {
    const stopped = await runs.stop(name, new SandstormError('canceled', `template "${name}" was deleted while it was being built`))
    try {
      return await images().remove(name, signal ? { signal } : {})
    } catch (err) {
      // A first build, stopped: there was nothing more to delete.
      if (stopped > 0 && err instanceof SandstormError && err.code === 'not_found') return { removedLayers: 0 }
      throw err
    }
  }

  return {
    build: (name, source, emit, signal) => runs.run(name, signal, (stop) => build(name, source, emit, stop)),
    track: runs.run,
    scratch,
    receiveFile,
    receiveContext,
    readDockerfile,
    remove,
    prune: (signal) => images().prune(signal ? { signal } : {}),
  }
}
