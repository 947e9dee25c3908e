/**
 * The E2B-compatible surface: E2B's lifecycle REST API and its in-sandbox agent protocol (envd),
 * so that the unmodified `e2b` SDK works against Sandstorm with only E2B_API_URL,
 * E2B_SANDBOX_URL and E2B_API_KEY set. It shares the port with Sandstorm's own API and is told
 * apart by path, and shares its middleware (signal, auth, errors) through the one app.
 */
import { createConnectRouter } from '@connectrpc/connect'
import { maxJsonBytes } from '../body-limits.js'
import type { Interceptor } from '@connectrpc/connect'
import type { Hono } from 'hono'
import type { AgentApi } from '../../agent/index.js'
import { SandstormError } from '../../shared/index.js'
import type { Logger, SandboxInfo } from '../../shared/index.js'
import type { SandboxCatalog } from '../catalog.js'
import type { IngressInfo, ServerEnv } from '../context.js'
import type { SandboxService } from '../sandbox-service.js'
import type { UsageHistory } from '../usage-history.js'
import type { AccessTokens } from '../access-tokens.js'
import { restError, toConnectError } from './errors.js'
import { filesRoutes } from './files-routes.js'
import { createFilesystemService } from './filesystem-service.js'
import { Filesystem } from './gen/filesystem/filesystem_pb.js'
import { Process } from './gen/process/process_pb.js'
import { defaultTimeoutS, lifecycleRoutes, sandboxAnswer } from './lifecycle-routes.js'
import { envdWake } from './envd-wake.js'
import { snapshotRoutes } from './snapshot-routes.js'
import { templateBuildRoutes } from './template-build-routes.js'
import type { SnapshotService } from '../snapshot-service.js'
import type { ImageBuildService } from '../image-builds.js'
import { createProcessRegistry, forgetGoneSandboxes } from './process-registry.js'
import { createProcessService } from './process-service.js'
import { createHelperSlots } from './helper-slots.js'
import { createSandboxExits } from './sandbox-exits.js'
import { severableFetchHandler } from './severed-streams.js'

export { envdVersion } from './lifecycle-routes.js'

/** What the E2B surface needs from the server. */
export interface E2bOptions {
  agent: AgentApi
  sandboxes: SandboxService
  catalog: SandboxCatalog
  /** Every sandbox's usage samples (getMetrics). */
  usageHistory: UsageHistory
  logger: Logger
  /** Holds `e2b-secret`, the key of the per-sandbox envd access tokens. */
  dataDir: string
  /** The envd access tokens (made from `dataDir`), which the app checks too, before any body is read. */
  tokens: AccessTokens
  /** Uploads larger than this answer 413. */
  maxFileBytes: number
  /** Fires when the server closes; envd's streams end with it. */
  shutdownSignal: AbortSignal
  /** The domain of sandbox hosts and a private sandbox's traffic token. */
  ingressOf(info: SandboxInfo): IngressInfo
  /** Snapshots and forks, when the agent can take snapshots. */
  snapshots?: SnapshotService
  /** Template builds (the SDK's Template.build), when the agent builds images. */
  imageBuilds?: ImageBuildService
}

const e2bPath = /^\/(?:sandboxes(?:\/|$)|v2\/sandboxes(?:\/|$)|snapshots$|templates\/|v2\/templates\/|v3\/templates$|process\.Process\/|filesystem\.Filesystem\/|files$|health$|envd\/)/

/** Is this request for the E2B surface? (Sandstorm's own API is under /v1, /healthz and /metrics.) */
export function isE2bPath(path: string): boolean {
  return e2bPath.test(path)
}

/** Registers the E2B surface on the server's one app: REST (API key, checked by the app), envd (per-sandbox access tokens). */
export function e2bRoutes(app: Hono<ServerEnv>, options: E2bOptions): void {
  const log = options.logger.child({ component: 'e2b' })
  const { tokens } = options
  const registry = createProcessRegistry((id) => options.catalog.get(id) !== undefined)
  // Streams of a sandbox that stops running are cut (severed-streams.ts).
  const exits = createSandboxExits(options.catalog)
  // A sandbox gone by any way (a kill, its timeout, a destroy through /v1) takes its processes' records with it.
  const stopDropping = forgetGoneSandboxes(options.catalog, registry)
  options.shutdownSignal.addEventListener('abort', () => (exits.close(), stopDropping()), { once: true })
  // The file helpers of one sandbox, a few at a time (helper-slots.ts).
  const helperSlots = createHelperSlots({ logger: log })
  const deps = { ...options, logger: log, tokens, registry, exits, helperSlots }
  // Before every envd handler: a paused sandbox with autoResume wakes on the call.
  app.use('*', envdWake(options.sandboxes, tokens, isEnvdPath))
  lifecycleRoutes(app, deps)
  snapshotRoutes(app, { ...deps, defaultTimeoutS, answer: (info) => sandboxAnswer(info, deps) })
  filesRoutes(app, deps)
  templateBuildRoutes(app, deps)

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
  // A Connect message is a command, its env or a stdin chunk: never more than a JSON body may be.
  const router = createConnectRouter({ grpc: false, grpcWeb: false, interceptors: [mapErrors], readMaxBytes: maxJsonBytes })
  router.service(Process, createProcessService(deps))
  router.service(Filesystem, createFilesystemService(deps))
  for (const handler of router.handlers) {
    const fetchHandler = severableFetchHandler(handler)
    // The token was checked from the headers before the body limit read anything (app.ts); the
    // handler's own scope checks it again, with the sandbox's state.
    app.post(handler.requestPath, async (c) => {
      const res = await fetchHandler(c.req.raw)
      // Connect answers a content type it does not speak with a bare 415; say what it takes.
      if (res.status !== 415) return res
      const streaming = handler.method.methodKind !== 'unary'
      const expected = streaming ? 'application/connect+json or application/connect+proto (a streaming call)' : 'application/json or application/proto'
      return c.json({ code: 'invalid_argument', message: `content-type: expected ${expected}, got "${c.req.header('content-type') ?? ''}"` }, 415)
    })
  }
}

/** E2B's REST error for an error on an E2B path; envd's HTTP routes answer 502 for a sandbox that is not running, as E2B's proxy does. */
export function e2bErrorResponse(err: unknown, path: string, logger: Logger): Response {
  const envd = path === '/files' || path === '/health'
  const status = envd && err instanceof SandstormError && err.code === 'unavailable' ? 502 : undefined
  return restError(err, logger, status)
}

/** E2B paths that carry a sandbox's access token instead of an API key. */
export function isEnvdPath(path: string): boolean {
  return envdPath.test(path)
}

const envdPath = /^\/(?:process\.Process\/|filesystem\.Filesystem\/|files$|health$|envd\/)/

/** envd's Connect calls (process and filesystem): each takes the sandbox's access token, whatever the method. */
export function isEnvdCallPath(path: string): boolean {
  return envdCallPath.test(path)
}

const envdCallPath = /^\/(?:process\.Process|filesystem\.Filesystem)\//
