import type { BuildRuns } from './build-runs.js'
import type { HttpBindings } from '@hono/node-server'
import type { AgentApi } from '../agent/index.js'
import type { Logger, SandboxIngress, SandboxInfo } from '../shared/index.js'
import type { ApiKeyCheck } from './api-keys.js'
import type { ImageBuildService } from './image-builds.js'
import type { ServerMetrics } from './metrics.js'
import type { SandboxService } from './sandbox-service.js'
import type { SnapshotService } from './snapshot-service.js'
import type { WarmPools } from './pools/index.js'
import type { UsageHistory } from './usage-history.js'

/** Hono's environment for every route: node's request and response, and the request's signal. */
export interface ServerEnv {
  Bindings: HttpBindings
  Variables: {
    /** Fires when the client goes away or the server shuts down; passed to every agent call. */
    signal: AbortSignal
  }
}

/** How a sandbox's ports are reached (the wire type, under the name the server's routes use). */
export type { SandboxIngress as IngressInfo }

/** What the route groups need. */
export interface RouteDeps {
  agent: AgentApi
  sandboxes: SandboxService
  /** Every sandbox's usage samples, taken every few seconds. */
  usageHistory: UsageHistory
  metrics: ServerMetrics
  logger: Logger
  checkApiKey: ApiKeyCheck
  /** Uploads larger than this answer 413. */
  maxFileBytes: number
  /** The ingress side of a sandbox, for the answers of create and get. */
  ingressOf(info: SandboxInfo): SandboxIngress
  /** Snapshot, fork and restore routes, when given. */
  snapshots?: SnapshotService
  /** Warm pool routes, when given. */
  pools?: WarmPools
  /** Image template builds and deletes, where the agent offers them. */
  imageBuilds?: ImageBuildService
  /** The template builds running, by name, under the server's build deadline; image and step builds alike. @default runs of their own */
  buildRuns?: BuildRuns
}
