/**
 * The e2b SDK's template builder (`Template.build`, `buildInBackground`, `getBuildStatus`,
 * `exists`), on Sandstorm's image builds (header `X-API-KEY`):
 *
 * - `POST /v3/templates` requests a build of a name: Sandstorm's template name (no tags).
 * - `GET /templates/:name/files/:hash` says whether a COPY's files are here, else where to PUT them.
 * - `PUT /templates/:name/uploads/:hash/files` takes the SDK's tar(.gz) of those files (the path
 *   ends in /files so that the app's JSON body limit leaves it to the file limit checked here).
 * - `POST /v2/templates/:name/builds/:buildId` starts the build: the template JSON as a Dockerfile.
 * - `GET /templates/:name/builds/:buildId/status` answers the status and the log from `logsOffset`.
 * - `GET /templates/aliases/:alias` says whether a template of that name exists.
 */
import { randomUUID } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Context, Hono } from 'hono'
import type { AgentApi } from '../../agent/index.js'
import { decompressed } from '../../images/layers/decompress.js'
import { unpackTar } from '../../images/layers/unpack-tar.js'
import { SandstormError, templateNameSchema, type TemplateBuildEvent } from '../../shared/index.js'
import { inodesOrRefuse, roomBudget, roomOrRefuse, withinRoom, type RoomOf } from '../../storage/index.js'
import type { Logger } from '../../shared/index.js'
import { capBytes } from '../body-limits.js'
import type { ServerEnv } from '../context.js'
import type { ImageBuildService, ImageBuildSource } from '../image-builds.js'

/** What the routes call of the server's image builds. */
export type ImageBuilder = Pick<ImageBuildService, 'build' | 'track'>
import { parseInput, show } from '../validation.js'
import { jsonOf } from '../request-input.js'
import { requestBody } from '../request-body.js'
import { restError } from './errors.js'
import { dockerfilePlan } from './template-build-dockerfile.js'
import type { DockerfilePlan } from './template-build-dockerfile.js'
import { buildEventLog } from './template-build-log.js'
import { createTemplateBuildStore } from './template-build-store.js'
import type { TemplateBuildRecord } from './template-build-store.js'
import { buildStatusQuery, requestBuildBody, startBuildBody } from './template-build-wire.js'
import type { StartBuildBody } from './template-build-wire.js'

/** What the routes need. */
export interface TemplateBuildRoutesDeps {
  agent: AgentApi
  /** Builds templates from images and Dockerfiles; absent: the routes refuse with failed_precondition. */
  imageBuilds?: ImageBuilder
  /** Builds keep their uploads in a temp dir under it. */
  dataDir: string
  /** Larger uploads answer 413. */
  maxFileBytes: number
  logger: Logger
  /** Fires when the server closes: builds are aborted and their temp dirs removed. */
  shutdownSignal: AbortSignal
  /** The room uploads and their unpacks may take on the data dir's disk. @default roomIn: the free space less the host's margin */
  roomOf?: RoomOf
}

/** Most bytes one upload of COPY files may unpack to (a gzip bomb stops here). */
const maxUnpackedBytes = 16 * 1024 ** 3
const hashPattern = /^[a-f0-9]{64}$/
/** Most uploads one build takes: one per COPY step, and a template has at most 256 steps. */
const maxUploadsPerBuild = 256

/** Registers the routes. */
export function templateBuildRoutes(app: Hono<ServerEnv>, deps: TemplateBuildRoutesDeps): void {
  const log = deps.logger.child({ component: 'e2b-template-build' })
  const store = createTemplateBuildStore({ dir: join(deps.dataDir, 'e2b-template-builds') })
  /** The room on the disk of `dir` (the data dir's, where the sandboxes' disks are too); none: refused. */
  const roomFor = (dir: string, what: string): Promise<number> => roomOrRefuse(dir, what, deps.roomOf)
  deps.shutdownSignal.addEventListener('abort', () => void store.close().catch((err: unknown) => log.warn({ err }, 'could not remove the template builds')), { once: true })

  const builder = (): ImageBuilder => {
    if (!deps.imageBuilds) throw new SandstormError('failed_precondition', 'this server builds no templates from images: expected a server with image builds')
    return deps.imageBuilds
  }
  const nameParam = (c: Context<ServerEnv>, param: string): string => {
    const name = c.req.param(param) ?? ''
    if (!templateNameSchema.safeParse(name).success) throw new SandstormError('invalid_argument', `${param}: expected a template name such as "debian", got ${show(name)}`)
    return name
  }
  const hashParam = (c: Context<ServerEnv>): string => {
    const hash = c.req.param('hash') ?? ''
    if (!hashPattern.test(hash)) throw new SandstormError('invalid_argument', `hash: expected a SHA-256 in lowercase hex, got ${show(hash)}`)
    return hash
  }

  app.post('/v3/templates', async (c) => {
    const body = parseInput(requestBuildBody, await jsonOf(c))
    const given = body.name ?? body.alias
    if (given === undefined) throw new SandstormError('invalid_argument', 'name: expected a template name such as "my-app", got nothing')
    const [name, tag] = given.split(':', 2) as [string, string | undefined]
    if (!templateNameSchema.safeParse(name).success) throw new SandstormError('invalid_argument', `name: expected a template name such as "my-app" (lowercase letters, digits, ".", "_", "-"), got ${show(given)}`)
    if (tag !== undefined || (body.tags?.length ?? 0) > 0) {
      throw new SandstormError('invalid_argument', `tags: expected none (Sandstorm numbers a template's versions itself), got ${show(tag !== undefined ? [tag] : body.tags)}`)
    }
    builder()
    const build = await store.request(name, {
      ...(body.memoryMB != null ? { memoryMiB: body.memoryMB } : {}),
      ...(body.cpuCount != null ? { cpus: body.cpuCount } : {}),
    })
    log.info({ template: name, buildId: build.buildId }, 'template build requested')
    return c.json({ templateID: name, buildID: build.buildId, names: [name], aliases: [name], tags: [], public: false }, 202)
  })

  app.get('/templates/:name/files/:hash', (c) => {
    const build = store.waiting(nameParam(c, 'name'))
    const hash = hashParam(c)
    if (build.uploaded.has(hash)) return c.json({ present: true })
    const url = new URL(`/templates/${build.name}/uploads/${hash}/files`, c.req.url)
    // Behind a proxy that ends TLS, the SDK must PUT over https as it reached us.
    if (c.req.header('x-forwarded-proto') === 'https') url.protocol = 'https:'
    // The SDK sends these headers with its PUT: the key it authenticated with, so that the upload
    // passes the same API key check as every other call (the key goes back to whoever sent it).
    const authorization = c.req.header('authorization')
    const headers = authorization ? { Authorization: authorization } : { 'X-API-Key': c.req.header('x-api-key') ?? '' }
    return c.json({ present: false, url: url.toString(), headers })
  })

  app.put('/templates/:name/uploads/:hash/files', async (c) => {
    try {
      return await receive(c)
    } catch (err) {
      // What is left of the body is read and dropped (request-body.ts): the connection goes on.
      return restError(err, log)
    }
  })

  async function receive(c: Context<ServerEnv>): Promise<Response> {
    const build = store.waiting(nameParam(c, 'name'))
    const hash = hashParam(c)
    const declared = Number(c.req.header('content-length') ?? '0')
    if (declared > deps.maxFileBytes) throw new SandstormError('payload_too_large', `upload too large: expected at most ${deps.maxFileBytes} bytes, got a Content-Length of ${declared}`)
    const body = requestBody(c)
    if (!body) throw new SandstormError('invalid_argument', 'body: expected the tar.gz of the files, got nothing')
    if (build.uploaded.size + build.receiving >= maxUploadsPerBuild) {
      throw new SandstormError('resource_exhausted', `build ${build.buildId}: expected at most ${maxUploadsPerBuild} uploads (one per COPY step), got more`)
    }
    const file = join(build.dir, 'uploads', hash)
    const partial = `${file}.${randomUUID()}.part`
    const signal = AbortSignal.any([c.var.signal, build.controller.signal])
    build.receiving++
    try {
      const what = `receiving the files of ${hash}`
      const room = await roomFor(build.dir, what)
      const data = withinRoom(capBytes(body, deps.maxFileBytes), room, what)
      await pipeline(Readable.from(data), createWriteStream(partial, { flags: 'wx', mode: 0o600 }), { signal })
      await rename(partial, file)
    } catch (err) {
      await rm(partial, { force: true })
      throw err
    } finally {
      build.receiving--
    }
    build.uploaded.add(hash)
    return c.body(null, 200)
  }

  app.post('/v2/templates/:name/builds/:buildId', async (c) => {
    const build = store.get(nameParam(c, 'name'), c.req.param('buildId'))
    if (build.status !== 'waiting') throw new SandstormError('failed_precondition', `build ${build.buildId}: expected a build awaiting its start, got one ${build.status}`)
    const body = parseInput(startBuildBody, await jsonOf(c))
    const plan = dockerfilePlan(body)
    if (plan.from.kind === 'image' && plan.from.credentials && body.steps.length > 0) {
      // A Dockerfile build takes no registry login; a template of only the image does.
      throw new SandstormError('invalid_argument', 'fromImageRegistry: expected no steps with registry credentials (a template of only the image is built with them), got steps')
    }
    const missing = plan.filesHashes.find((h) => !build.uploaded.has(h))
    if (missing) throw new SandstormError('failed_precondition', `filesHash ${missing}: expected its files uploaded first (GET /templates/${build.name}/files/${missing} says where)`)
    const service = builder()
    build.status = 'building'
    log.info({ template: build.name, buildId: build.buildId, from: plan.from }, 'template build started')
    // The SDK polls the status; the build outlives this request.
    void run(build, plan, body, service)
    return c.json({}, 202)
  })

  app.get('/templates/:name/builds/:buildId/status', (c) => {
    const build = store.get(nameParam(c, 'name'), c.req.param('buildId'))
    const { logsOffset = 0 } = parseInput(buildStatusQuery, c.req.query())
    return c.json({
      templateID: build.name,
      buildID: build.buildId,
      status: build.status,
      logEntries: build.log.slice(logsOffset),
      logs: [],
      ...(build.reason ? { reason: build.reason } : {}),
    })
  })

  app.get('/templates/aliases/:alias', async (c) => {
    const alias = c.req.param('alias')
    const templates = await deps.agent.templates({ signal: c.var.signal })
    if (!templates.some((t) => t.name === alias)) throw new SandstormError('not_found', `template "${alias}" not found`)
    return c.json({ templateID: alias, public: false })
  })

  /** Unpacks the uploads into the context, builds, and records how it ended; never rejects. */
  async function run(build: TemplateBuildRecord, plan: DockerfilePlan, body: StartBuildBody, service: ImageBuilder): Promise<void> {
    const events = buildEventLog(store, build, body.steps, plan)
    try {
      // The whole of it among the template's builds, its unpack too: a delete stops it.
      await service.track(build.name, build.controller.signal, (signal) => unpackAndBuild(build, plan, body, service, events.emit, signal))
      const end = events.end()
      await store.finish(build, end.status, end.reason)
      log.info({ template: build.name, buildId: build.buildId, status: end.status }, 'template build ended')
    } catch (err) {
      const error = SandstormError.from(err)
      store.log(build, 'error', error.expose ? error.message : 'the build failed (see the server log)')
      await store.finish(build, 'error', { message: error.expose ? error.message : 'the build failed (see the server log)' })
      log.warn({ template: build.name, buildId: build.buildId, err }, 'template build failed before building')
    }
  }

  /** Unpacks the uploads into the context and builds, under `signal` (the build's, or a stop of the template's builds). */
  async function unpackAndBuild(build: TemplateBuildRecord, plan: DockerfilePlan, body: StartBuildBody, service: ImageBuilder, emit: (event: TemplateBuildEvent) => void, signal: AbortSignal): Promise<void> {
    const contextDir = join(build.dir, 'context')
    await mkdir(contextDir, { mode: 0o700 })
    for (const hash of plan.filesHashes) {
      const dir = join(contextDir, hash)
      await mkdir(dir)
      const what = `unpacking the files of ${hash}`
      const room = roomBudget(await roomFor(dir, what), what, await inodesOrRefuse(dir, what))
      // The SDK gzips unless told not to: sniffed, as a layer of unknown media type is.
      const tar = await decompressed(createReadStream(join(build.dir, 'uploads', hash)), 'application/octet-stream')
      await unpackTar(tar, dir, { whiteouts: false, label: `the files of ${hash}`, maxLayerBytes: maxUnpackedBytes, room, signal, logger: log })
    }
    const size = { ...(build.memoryMiB !== undefined ? { memoryMiB: build.memoryMiB } : {}), ...(build.cpus !== undefined ? { cpus: build.cpus } : {}) }
    const start = plan.start ? { start: plan.start } : {}
    const source: ImageBuildSource =
      plan.from.kind === 'image' && plan.from.credentials ? { kind: 'image', image: plan.from.image, credentials: plan.from.credentials } : { kind: 'dockerfile', contextDir, dockerfile: plan.dockerfile, ...(body.force ? { noCache: true } : {}) }
    await service.build(build.name, { ...source, ...start, ...size }, emit, signal)
  }
}
