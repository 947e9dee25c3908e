import { Hono } from 'hono'
import type { Context } from 'hono'
import { matchedRoutes } from 'hono/route'
import { SandstormError, type AgentInfo } from '../shared/index.js'
import type { RouteDeps, ServerEnv } from './context.js'
import { e2bErrorResponse, e2bRoutes, isE2bPath, isEnvdCallPath, isEnvdPath } from './e2b/index.js'
import { envdSandboxId } from './e2b/envd-scope.js'
import { createAccessTokens } from './access-tokens.js'
import type { E2bOptions } from './e2b/index.js'
import { fleetRoutes } from './fleet/index.js'
import type { AgentRegistry, CommandLog } from './fleet/index.js'
import { errorResponse } from './http-errors.js'
import { withRequestId } from './request-context.js'
import { execRoutes } from './routes-exec.js'
import { networkRoutes } from './routes-network.js'
import { fileRoutes } from './routes-files.js'
import { healthRoutes } from './routes-health.js'
import { sandboxRoutes } from './routes-sandboxes.js'
import { snapshotRoutes } from './routes-snapshots.js'
import { jsonTooLarge, maxJsonBytes, readsBodyWhole } from './body-limits.js'
import { templateRoutes } from './routes-templates.js'
import { uiRoutes } from './routes-ui.js'
import { poolRoutes } from './pools/index.js'
import { presentedApiKey } from './api-keys.js'


/** What the app needs beyond the routes' deps: the other surfaces, the shutdown signal and a place to count work in flight. */
export interface AppOptions extends RouteDeps {
  /** The E2B surface (REST and envd) on the same port. */
  e2b: Omit<E2bOptions, 'agent' | 'sandboxes' | 'snapshots' | 'logger' | 'maxFileBytes' | 'shutdownSignal' | 'ingressOf' | 'tokens'>
  /** GET /v1/agents and /v1/logs: the fleet's agents, or `local` (sandstorm up) as the one agent. */
  fleet: { registry?: AgentRegistry; local?: () => Promise<AgentInfo>; commandLog: CommandLog; rotateJoinToken?: () => string }
  /** Fires when the server closes; every request's signal follows it. */
  shutdownSignal: AbortSignal
  /** Called with each handler's promise, so that close() can wait for handlers before closing the DB. */
  track(work: Promise<unknown>): void
}

/**
 * The server's one app: Sandstorm's API under /v1, the E2B surface and the fleet routes, behind
 * one set of middleware (the request's signal, metrics, API key auth, body limit) and one error
 * mapping, in the body format of the surface a path belongs to. Ingress to sandbox ports is
 * dispatched before this app sees a request (edge.ts).
 */
export function createApp(options: AppOptions): Hono<ServerEnv> {
  const { logger, metrics, checkApiKey, shutdownSignal } = options
  const app = new Hono<ServerEnv>()
  const fail = (err: unknown, c: Context<ServerEnv>): Response =>
    isE2bPath(c.req.path) ? e2bErrorResponse(err, c.req.path, logger) : errorResponse(err, logger, { method: c.req.method, path: c.req.path })

  // An id per request, in the answer's x-request-id and in every log line and hidden error of it.
  app.use('*', (c, next) =>
    withRequestId((requestId) => {
      c.header('x-request-id', requestId)
      return next()
    }),
  )

  // One signal per request, linked to client disconnect and to shutdown. Its reason is a
  // SandstormError, so code that rethrows the reason still throws one of ours.
  app.use('*', async (c, next) => {
    const controller = new AbortController()
    const onShutdown = (): void => controller.abort(new SandstormError('unavailable', 'the server is shutting down'))
    const onClientGone = (): void => controller.abort(new SandstormError('canceled', 'the client closed the connection'))
    // A request that comes in on a kept-alive connection while closing must not reach the database.
    if (shutdownSignal.aborted) return fail(new SandstormError('unavailable', 'the server is shutting down'), c)
    shutdownSignal.addEventListener('abort', onShutdown, { once: true })
    // The response (a stream, maybe) outlives the handler; let go of the shutdown signal once it
    // is out. A finished response does not abort: an agent may tie a started process to it. One
    // closed before it was all written means the client went away. (Not the web Request's signal:
    // reading it makes the adapter build a whole web Request, headers and body stream, per request.)
    const { outgoing } = c.env
    outgoing.once('close', () => {
      shutdownSignal.removeEventListener('abort', onShutdown)
      if (!outgoing.writableFinished) onClientGone()
    })
    c.set('signal', controller.signal)
    const work = next()
    options.track(work)
    return work
  })

  app.use('*', async (c, next) => {
    const startedAt = performance.now()
    await next()
    // The route is the last handler matched that is not a middleware on every path (a '*' one
    // registered after the routes, such as envd's wake-up, matches last).
    const path = matchedRoutes(c)
      .filter((r) => r.path !== '*' && r.path !== '/*')
      .at(-1)?.path
    const route = path === undefined ? 'unmatched' : `${c.req.method} ${path}`
    metrics.httpRequests.inc({ route, status: String(c.res.status) })
    logger.debug({ route, status: c.res.status, ms: Math.round(performance.now() - startedAt) }, 'request answered')
  })

  // The web console's static files hold no data, so they are answered before the key is asked for.
  uiRoutes(app)

  // Every request whose body is read whole must show its credential, from its headers, before a
  // route reads it.
  const envdTokens = createAccessTokens(options.e2b.dataDir)
  const readsWhole = (c: Context<ServerEnv>): boolean => readsBodyWhole(c.req.method, c.req.path, c.req.header('content-type') ?? '')

  // Every route takes the API key, but /healthz and envd's paths, which carry a sandbox's access token.
  app.use('*', async (c, next) => {
    const path = c.req.path
    if (isEnvdCallPath(path)) {
      // envd's process and filesystem calls: their token, checked again with the sandbox's state by the handler.
      try {
        envdSandboxId({ get: (name) => c.req.header(name) ?? null }, envdTokens)
      } catch (err) {
        logger.warn({ method: c.req.method, path: path.slice(0, 200), remote: c.env.incoming.socket.remoteAddress }, 'unauthenticated envd call')
        return fail(err, c)
      }
      return next()
    }
    // GET /healthz, GET /health and GET /files, and the upload POST /files: their handlers check
    // the token or the signed URL before reading anything. Any other body on these paths takes a key.
    if ((path === '/healthz' || isEnvdPath(path)) && !readsWhole(c)) return next()
    const presented = presentedApiKey({ authorization: c.req.header('authorization'), 'x-api-key': c.req.header('x-api-key') })
    if (presented === undefined || !checkApiKey(presented)) {
      const why = presented === undefined ? 'missing API key' : 'wrong API key'
      // The path as far as a route's can go: a client without a key must not write kilobytes into the log per request.
      logger.warn({ method: c.req.method, path: c.req.path.slice(0, 200), remote: c.env.incoming.socket.remoteAddress }, `unauthenticated request: ${why}`)
      return fail(new SandstormError('unauthenticated', `${why}: expected "Authorization: Bearer <key>" or "X-API-Key: <key>"`), c)
    }
    return next()
  })

  // A body read whole that declares more than the JSON cap is refused before a byte of it is read.
  // One sent chunked is cut at the cap as it is read: by jsonOf (request-input.ts) in every route
  // that reads JSON, by Connect's readMaxBytes for each envd message. Uploads (the exact routes,
  // body-limits.ts) stream under their own limits: files to the sandbox, tars of image builds.
  app.use('*', async (c, next) => {
    if (readsWhole(c) && Number(c.req.header('content-length') ?? 0) > maxJsonBytes) return fail(jsonTooLarge(), c)
    return next()
  })

  healthRoutes(app, options)
  templateRoutes(app, options)
  sandboxRoutes(app, options)
  networkRoutes(app, options)
  execRoutes(app, options)
  fileRoutes(app, options)
  if (options.snapshots) snapshotRoutes(app, { ...options, snapshots: options.snapshots })
  if (options.pools) poolRoutes(app, options.pools)
  fleetRoutes(app, options.fleet)
  e2bRoutes(app, { ...options.e2b, tokens: envdTokens, agent: options.agent, sandboxes: options.sandboxes, snapshots: options.snapshots, logger, maxFileBytes: options.maxFileBytes, shutdownSignal, ingressOf: options.ingressOf })

  app.notFound((c) => {
    const what = isE2bPath(c.req.path) ? 'an E2B route' : 'one of the routes of the HTTP API (/v1/...)'
    return fail(new SandstormError('not_found', `no route ${c.req.method} ${c.req.path}: expected ${what}`), c)
  })
  app.onError((err, c) => fail(err, c))
  return app
}
