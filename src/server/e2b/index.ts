/**
 * The E2B-compatible surface: E2B's lifecycle REST API and its in-sandbox agent protocol (envd),
 * so that the unmodified `e2b` SDK works against Sandstorm with only E2B_API_URL,
 * E2B_SANDBOX_URL and E2B_API_KEY set. It shares the port with Sandstorm's own API and is told
 * apart by path.
 */
import { createConnectRouter } from '@connectrpc/connect'
import type { Interceptor } from '@connectrpc/connect'
import { createFetchHandler } from '@connectrpc/connect/protocol'
import { Hono } from 'hono'
import type { AgentApi } from '../../agent/index.js'
import { SandstormError } from '../../shared/index.js'
import type { Logger } from '../../shared/index.js'
import type { ApiKeyCheck } from '../api-keys.js'
import type { SandboxCatalog } from '../catalog.js'
import type { ServerEnv } from '../context.js'
import type { SandboxService } from '../sandbox-service.js'
import { createAccessTokens } from './access-tokens.js'
import { restError, toConnectError } from './errors.js'
import { filesRoutes } from './files-routes.js'
import { createFilesystemService } from './filesystem-service.js'
import { Filesystem } from './gen/filesystem/filesystem_pb.js'
import { Process } from './gen/process/process_pb.js'
import { lifecycleRoutes } from './lifecycle-routes.js'
import { createProcessRegistry } from './process-registry.js'
import { createProcessService } from './process-service.js'

export { envdVersion } from './lifecycle-routes.js'

/** What the E2B surface needs from the server. */
export interface E2bOptions {
  agent: AgentApi
  sandboxes: SandboxService
  catalog: SandboxCatalog
  logger: Logger
  checkApiKey: ApiKeyCheck
  /** Holds `e2b-secret`, the key of the per-sandbox envd access tokens. */
  dataDir: string
  /** Uploads larger than this answer 413. */
  maxFileBytes: number
  /** Fires when the server closes; every request's signal follows it. */
  shutdownSignal: AbortSignal
  /** Called with each handler's promise, so that close() waits for it. */
  track(work: Promise<unknown>): void
}

const e2bPath = /^\/(?:sandboxes(?:\/|$)|v2\/sandboxes(?:\/|$)|process\.Process\/|filesystem\.Filesystem\/|files$|health$|envd\/)/

/** Is this request for the E2B surface? (Sandstorm's own API is under /v1, /healthz and /metrics.) */
export function isE2bPath(path: string): boolean {
  return e2bPath.test(path)
}

/** The E2B surface as a Hono app: REST with API-key auth, envd with per-sandbox access tokens. */
export function createE2bApp(options: E2bOptions): Hono<ServerEnv> {
  const { logger, checkApiKey, shutdownSignal } = options
  const log = logger.child({ component: 'e2b' })
  const tokens = createAccessTokens(options.dataDir)
  const registry = createProcessRegistry()
  const app = new Hono<ServerEnv>()

  // One signal per request, linked to client disconnect and to shutdown (as the /v1 app does).
  app.use('*', async (c, next) => {
    const controller = new AbortController()
    const onShutdown = (): void => controller.abort(new SandstormError('unavailable', 'the server is shutting down'))
    const onClientGone = (): void => controller.abort(new SandstormError('canceled', 'the client closed the connection'))
    if (shutdownSignal.aborted) onShutdown()
    shutdownSignal.addEventListener('abort', onShutdown, { once: true })
    c.req.raw.signal.addEventListener('abort', onClientGone, { once: true })
    c.env.outgoing.once('close', () => shutdownSignal.removeEventListener('abort', onShutdown))
    c.set('signal', controller.signal)
    const work = next()
    options.track(work)
    await work
  })

  // The REST API takes E2B's API key; envd calls carry the sandbox's access token instead.
  app.use('/sandboxes/*', requireApiKey)
  app.use('/sandboxes', requireApiKey)
  app.use('/v2/*', requireApiKey)
  async function requireApiKey(c: import('hono').Context<ServerEnv>, next: () => Promise<void>): Promise<Response | void> {
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header('authorization') ?? '')?.[1]
    const presented = c.req.header('x-api-key') ?? bearer
    if (presented === undefined || !checkApiKey(presented)) {
      const why = presented === undefined ? 'missing API key' : 'wrong API key'
      log.warn({ method: c.req.method, path: c.req.path }, `unauthenticated E2B request: ${why}`)
      return restError(new SandstormError('unauthenticated', `${why}: expected "X-API-KEY: <key>" (sandstorm keys create --e2b makes one)`), log)
    }
    return next()
  }

  const deps = { ...options, logger: log, tokens, registry }
  lifecycleRoutes(app, deps)
  filesRoutes(app, deps)

  // Errors become ConnectErrors here, once, for unary calls and for streams alike.
  const mapErrors: Interceptor = (next) => async (req) => {
    try {
      const res = await next(req)
      if (!res.stream) return res
      const messages = res.message
      return {
        ...res,
        message: (async function* () {
          try {
            yield* messages
          } catch (err) {
            throw toConnectError(err, log)
          }
        })(),
      }
    } catch (err) {
      throw toConnectError(err, log)
    }
  }
  const router = createConnectRouter({ grpc: false, grpcWeb: false, interceptors: [mapErrors] })
  router.service(Process, createProcessService(deps))
  router.service(Filesystem, createFilesystemService(deps))
  for (const handler of router.handlers) {
    const fetchHandler = createFetchHandler(handler)
    app.post(handler.requestPath, (c) => fetchHandler(c.req.raw))
  }

  app.notFound((c) => restError(new SandstormError('not_found', `no E2B route ${c.req.method} ${c.req.path}`), log))
  app.onError((err, c) => {
    // envd's HTTP routes answer 502 for a sandbox that is not running, as E2B's proxy does.
    const envd = c.req.path === '/files' || c.req.path === '/health'
    const status = envd && err instanceof SandstormError && err.code === 'unavailable' ? 502 : undefined
    return restError(err, log, status)
  })
  return app
}
