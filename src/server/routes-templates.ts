import type { Hono } from 'hono'
import type { Context } from 'hono'
import { buildArgsSchema, buildTemplateBody, imageBuildBody, promoteBody, SandstormError, templateNameSchema, templateStartSchema, uploadBuildQuery, type TemplateBuildEvent } from '../shared/index.js'
import { z } from 'zod'
import type { RouteDeps, ServerEnv } from './context.js'
import { createGoldenService } from './golden-service.js'
import type { ImageBuildService, ImageBuildSettings, ImageBuildSource } from './image-builds.js'
import { jsonOf, queryOf } from './request-input.js'
import { requestBody } from './request-body.js'
import { responseStream, streamSignal } from './streams.js'
import { parseInput, parseJsonText } from './validation.js'
import { buildEventQueue } from './build-event-queue.js'

const nameParam = z.strictObject({ name: templateNameSchema })

/**
 * GET /v1/templates: the templates the agent can start sandboxes from; DELETE one; POST …/build
 * from an image (JSON `image`), an uploaded archive or Dockerfile context (a tar body), or steps
 * run in a sandbox (JSON `from` + `steps`); with snapshots, promote and rollback.
 */
export function templateRoutes(app: Hono<ServerEnv>, deps: RouteDeps): void {
  const nameOf = (name: string): string => parseInput(nameParam, { name }).name
  const images = (): ImageBuildService => {
    if (!deps.imageBuilds) throw new SandstormError('failed_precondition', 'this server cannot build image templates: expected its local agent')
    return deps.imageBuilds
  }
  app.get('/v1/templates', async (c) => c.json(await deps.agent.templates({ signal: c.var.signal })))

  // A name of its own: "prune" with no further path segment is no template route.
  app.post('/v1/templates/prune', async (c) => c.json(await images().prune(c.var.signal)))

  app.delete('/v1/templates/:name', async (c) => {
    const name = nameOf(c.req.param('name'))
    return c.json(await images().remove(name, c.var.signal))
  })

  const golden = deps.snapshots ? createGoldenService({ agent: deps.agent, sandboxes: deps.sandboxes, snapshots: deps.snapshots, logger: deps.logger, ...(deps.buildRuns ? { runs: deps.buildRuns } : {}) }) : undefined

  app.post('/v1/templates/:name/build', async (c) => {
    const name = nameOf(c.req.param('name'))
    if ((c.req.header('content-type') ?? '').startsWith('application/x-tar')) return uploadBuild(c, name)
    const json = await jsonOf(c)
    if (json !== null && typeof json === 'object' && 'image' in json) {
      const body = parseInput(imageBuildBody, json)
      const { registryAuth, image, ...settings } = body
      return buildResponse(c, name, (emit, signal) => images().build(name, { kind: 'image', image, ...(registryAuth ? { credentials: registryAuth } : {}), ...settings }, emit, signal))
    }
    if (!golden) throw new SandstormError('failed_precondition', 'this server cannot build templates from steps: expected an agent with snapshots')
    const body = parseInput(buildTemplateBody, json)
    const templates = await deps.agent.templates({ signal: c.var.signal })
    if (!templates.some((t) => t.name === body.from)) {
      const names = templates.map((t) => t.name).join(', ') || '(none built)'
      throw new SandstormError('not_found', `unknown template "${body.from}" to build from: expected one of ${names}`)
    }
    return buildResponse(c, name, (emit, signal) => golden.build(name, body, emit, signal))
  })

  /** A build whose body is a tar: an image archive, or a Dockerfile's context. */
  async function uploadBuild(c: Context<ServerEnv>, name: string): Promise<Response> {
    const service = images()
    const q = queryOf(c, uploadBuildQuery)
    const settings: ImageBuildSettings = {
      ...(q.memoryMiB ? { memoryMiB: q.memoryMiB } : {}),
      ...(q.cpus ? { cpus: q.cpus } : {}),
      ...(q.start ? { start: parseInput(z.strictObject({ start: templateStartSchema }), { start: parseJsonText(q.start) }).start } : {}),
    }
    const buildArgs = q.buildArgs ? parseInput(z.strictObject({ buildArgs: buildArgsSchema }), { buildArgs: parseJsonText(q.buildArgs) }).buildArgs : undefined
    const body = requestBody(c)
    if (!body) throw new SandstormError('invalid_argument', 'body: expected a tar (the image archive or the build context), got none')
    const scratch = await service.scratch()
    try {
      let source: ImageBuildSource
      if (q.source === 'archive') {
        source = { kind: 'archive', path: await service.receiveFile(body, scratch.dir) }
      } else {
        const contextDir = await service.receiveContext(body, scratch.dir, c.var.signal)
        const dockerfile = await service.readDockerfile(contextDir, q.dockerfile ?? 'Dockerfile')
        source = { kind: 'dockerfile', contextDir, dockerfile, ...(buildArgs ? { buildArgs } : {}), ...(q.noCache === 'true' ? { noCache: true } : {}) }
      }
      return buildResponse(c, name, (emit, signal) => service.build(name, { ...source, ...settings }, emit, signal).finally(scratch.release))
    } catch (err) {
      await scratch.release()
      throw err
    }
  }

  /** Streams a build's events as NDJSON; the build runs apart from the response (a client gone cancels it, and it still cleans up). */
  function buildResponse(c: Context<ServerEnv>, name: string, run: (emit: (event: TemplateBuildEvent) => void, signal: AbortSignal) => Promise<void>): Response {
    const { stop, signal } = streamSignal(c.var.signal)
    const events = buildEventQueue()
    void run(events.push, signal).finally(events.end)
    const encoder = new TextEncoder()
    const lines = (async function* () {
      for await (const event of events) yield encoder.encode(`${JSON.stringify(event)}\n`)
    })()
    const stream = responseStream(lines, { stop, signal, logger: deps.logger, context: { template: name } })
    return new Response(stream, { status: 200, headers: { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' } })
  }

  if (!golden) return
  app.post('/v1/templates/:name/promote', async (c) => {
    const name = nameOf(c.req.param('name'))
    const body = parseInput(promoteBody, await jsonOf(c))
    return c.json(await golden.promote(name, body.snapshotId, { signal: c.var.signal }, body.start ? { start: body.start } : {}), 201)
  })

  app.post('/v1/templates/:name/rollback', async (c) => {
    const name = nameOf(c.req.param('name'))
    return c.json(await golden.rollback(name, { signal: c.var.signal }))
  })
}
