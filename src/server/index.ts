/** The control plane of one machine: the HTTP API over an agent, with a SQLite catalog. */
import { createImageBuildService } from './image-builds.js'
import { createBuildRuns, defaultBuildTimeoutMs } from './build-runs.js'
import { setMaxListeners } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { AgentApi } from '../agent/index.js'
import { createLogger, SandstormError } from '../shared/index.js'
import type { DefaultEgress, Logger, SandboxInfo } from '../shared/index.js'
import type { IngressInfo } from './context.js'
import { adoptSandboxes } from './adoption.js'
import { watchSandboxStates } from './state-watch.js'
import { createApiKey, createApiKeyCheck, ensureApiKey } from './api-keys.js'
import type { ApiKeyForm } from './api-keys.js'
import { createApp } from './app.js'
import { createSandboxCatalog } from './catalog.js'
import { openDatabase } from './db.js'
import { createServerMetrics } from './metrics.js'
import { createSandboxService } from './sandbox-service.js'
import { createSnapshotService } from './snapshot-service.js'
import { createUsageHistory } from './usage-history.js'
import { startUsageRecorder } from './usage-recorder.js'
import { createWarmPools, type PoolConfig } from './pools/index.js'
import { createEdge } from './edge.js'
import { createTerminalSockets } from './terminal-socket.js'
import { createAccessTokens } from './access-tokens.js'
import { createIngress } from './ingress/ingress.js'
import { createUpstreamBudget } from './ingress/upstream-budget.js'
import { defaultFdShares, perSandboxShareOf } from './fd-shares.js'
import { createCommandLog, localAgentView, startFleet, withCommandLog } from './fleet/index.js'
import type { Fleet, FleetOptions } from './fleet/index.js'

export type { FleetOptions } from './fleet/index.js'
export { parseJoinToken, insecureHeaders, serverCommonName } from './fleet/index.js'

/** Options of startServer. */
export interface ServerOptions {
  /** SQLite at `<dataDir>/sandstorm.db`, the API key at `<dataDir>/api-key`. */
  dataDir: string
  /** The agent that runs the sandboxes (`up`: in this process). Give this or `fleet`. */
  agent?: AgentApi
  /** Run no agent here: listen for agents that dial in over gRPC and schedule across them. */
  fleet?: FleetOptions
  /** @default '127.0.0.1' */
  host?: string
  /** 0 picks any free port. @default 7420 */
  port?: number
  /** @default createLogger() */
  logger?: Logger
  /** Larger uploads answer 413 and leave nothing. @default 1 GiB */
  maxFileBytes?: number
  /** Connections the HTTP port holds at once (upgraded ones too); more are closed as they come. @default a quarter of the process's open-file limit */
  maxConnections?: number
  /**
   * Connections into sandboxes (ingress requests and upgrades in flight, kept-alive ones, tunnels)
   * held at once, all sandboxes together; past it a request answers 503.
   * @default a quarter of the process's open-file limit
   */
  maxUpstreamConnections?: number
  /** Of those, what one sandbox may hold. @default a quarter of maxUpstreamConnections, at most 1,024 */
  maxUpstreamConnectionsPerSandbox?: number
  /** A request to a sandbox's port in flight, or an upgraded connection, that carries no byte either way for this long is ended. @default 600_000 (10 minutes) */
  ingressIdleMs?: number
  /** Sandbox lifetime when a create gives none. @default 5 minutes */
  defaultTimeoutMs?: number
  /** Runtime of a create that names none and starts from no snapshot. @default the agent's own default */
  defaultRuntime?: string
  /** How often the agents are asked which sandboxes stopped on their own. @default 10 s */
  stateWatchMs?: number
  /** A paused machine (qemu) is written to disk and its VM stopped, freeing its RAM, after this long paused. @default never */
  hibernateAfterMs?: number
  /** How often every sandbox's usage is sampled (GET /v1/sandboxes/:id/metrics, E2B's getMetrics). @default 5 s, as E2B */
  metricsIntervalMs?: number
  /** Usage samples kept per sandbox; older ones are dropped. @default 17280 (24 hours at 5 s) */
  metricsMaxSamples?: number
  /** Egress of a create that names no network, and of Dockerfile RUN steps: the public internet ('all') or nothing ('none'). @default 'all' */
  defaultEgress?: DefaultEgress
  /** An image template build running longer fails with deadline_exceeded, leaving no build sandbox and no template. @default 1 hour */
  buildTimeoutMs?: number
  /** Disk quota of a create that names none and whose template has none. @default 2048 MiB */
  defaultDiskMiB?: number
  /**
   * The domain sandbox ports are reached under: `<port>-<id>.<domain>` (E2B's `domain`). Its DNS
   * must point at this server. @default `localhost:<port>` (browsers and curl resolve *.localhost to loopback)
   */
  domain?: string
  /**
   * Warm pools kept without being stored (`sandstorm up`'s defaults): a pool stored with
   * PUT /v1/pools wins, a template that is not built is skipped, and they fill in the background.
   * @default none
   */
  defaultPools?: readonly PoolConfig[]
}

/** A started server. */
export interface RunningServer {
  /** Base URL, e.g. `http://127.0.0.1:7420`. */
  url: string
  apiKey: string
  apiKeyPath: string
  /** The domain sandbox ports are reached under (`<port>-<id>.<domain>`). */
  domain: string
  /** With `fleet`: the port agents dial and the token they join with. */
  fleet?: { port: number; joinToken: string }
  /** Every route of the HTTP app (method and path pattern, `:id` style), for docs and the edge's fuzz test. */
  routes: readonly { method: string; path: string }[]
  /** Stops accepting, ends in-flight streams, clears timers and closes the database. Sandboxes keep running. */
  close(): Promise<void>
}

/** Grace for responses still being written when the server closes, before their sockets are cut. */
const closeGraceMs = 2000

/** Opens the catalog, adopts what the agent runs, re-arms expiry timers and listens. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const logger = (options.logger ?? createLogger()).child({ component: 'server' })
  if (!options.agent === !options.fleet) throw new SandstormError('invalid_argument', 'startServer takes an agent or a fleet: expected exactly one')
  const db = openDatabase(options.dataDir)
  const shutdown = new AbortController()
  // Every request in flight listens on it; the default cap of 10 would warn under ordinary load.
  setMaxListeners(0, shutdown.signal)
  const inFlight = new Set<Promise<unknown>>()
  let fleet: Fleet | undefined
  try {
    const { apiKey, apiKeyPath } = ensureApiKey(options.dataDir, db, logger)
    const catalog = createSandboxCatalog(db)
    const metrics = createServerMetrics(catalog)
    // A fleet adopts each agent's sandboxes when that agent registers, not here.
    if (options.fleet) fleet = await startFleet({ ...options.fleet, dataDir: options.dataDir, db, catalog, logger })
    // Every command is recorded centrally: fleet agents report theirs, the in-process agent is wrapped.
    const commandLog = fleet?.commandLog ?? createCommandLog(db)
    const agent: AgentApi = fleet?.agent ?? withCommandLog(options.agent!, commandLog)
    if (!fleet) await adoptSandboxes({ agent, catalog, logger }, { signal: shutdown.signal })
    const coldSandboxes = createSandboxService({
      agent,
      catalog,
      metrics,
      logger,
      defaultTimeoutMs: options.defaultTimeoutMs ?? 5 * 60_000,
      defaultRuntime: options.defaultRuntime,
      defaultEgress: options.defaultEgress,
      hibernateAfterMs: options.hibernateAfterMs,
      ...(options.defaultDiskMiB !== undefined ? { defaultDiskMiB: options.defaultDiskMiB } : {}),
      shutdownSignal: shutdown.signal,
    })
    // Pools start after adoption, which destroyed the last run's pooled sandboxes as orphans.
    const pools = createWarmPools({ agent, db, catalog, sandboxes: coldSandboxes, metrics, logger, shutdownSignal: shutdown.signal })
    const sandboxes = pools.wrap(coldSandboxes)
    sandboxes.armAll()
    watchSandboxStates({ agent, catalog, logger, intervalMs: options.stateWatchMs ?? 10_000, signal: shutdown.signal })
    const usageHistory = createUsageHistory(db, { maxSamples: options.metricsMaxSamples })
    startUsageRecorder({ agent, catalog, history: usageHistory, intervalMs: options.metricsIntervalMs ?? 5000, logger, signal: shutdown.signal })
    const snapshots = await createSnapshotService({ agent, db, catalog, sandboxes, logger, shutdownSignal: shutdown.signal })
    const track = (work: Promise<unknown>): void => {
      inFlight.add(work)
      const forget = (): void => void inFlight.delete(work)
      work.then(forget, forget)
    }
    const checkApiKey = createApiKeyCheck(db)
    const trafficTokens = createAccessTokens(options.dataDir, 'traffic')
    // Known once the server listens, when no --domain was given.
    let domain = options.domain
    const ingressOf = (info: SandboxInfo): IngressInfo => ({
      domain: domain ?? 'localhost',
      ...(info.network !== 'none' && !info.network.allowPublicTraffic ? { trafficAccessToken: trafficTokens.tokenFor(info.id) } : {}),
    })
    // One registry of running builds, by template name: image and step builds share the deadline, and a delete stops either.
    const buildRuns = createBuildRuns({ timeoutMs: options.buildTimeoutMs ?? defaultBuildTimeoutMs })
    const imageBuilds = agent.images ? createImageBuildService({ agent, dataDir: options.dataDir, logger, runs: buildRuns, ...(options.defaultEgress ? { defaultEgress: options.defaultEgress } : {}) }) : undefined
    const app = createApp({
      agent,
      sandboxes,
      usageHistory,
      snapshots,
      pools,
      ...(imageBuilds ? { imageBuilds } : {}),
      buildRuns,
      metrics,
      logger,
      checkApiKey,
      maxFileBytes: options.maxFileBytes ?? 1024 ** 3,
      ingressOf,
      e2b: { catalog, usageHistory, dataDir: options.dataDir, ...(imageBuilds ? { imageBuilds } : {}) },
      fleet: { registry: fleet?.registry, local: fleet ? undefined : () => localAgentView(agent), commandLog, ...(fleet ? { rotateJoinToken: () => fleet!.rotateJoinToken() } : {}) },
      shutdownSignal: shutdown.signal,
      track,
    })
    // Connections to the port and connections into sandboxes each take a share of the descriptors.
    const fdShares = defaultFdShares()
    const maxUpstream = options.maxUpstreamConnections ?? fdShares.maxUpstream
    const budget = createUpstreamBudget({ maxTotal: maxUpstream, maxPerSandbox: options.maxUpstreamConnectionsPerSandbox ?? perSandboxShareOf(maxUpstream) })
    // The agent in this process hands out sockets, which ingress keeps alive between requests.
    const ingress = createIngress({
      agent,
      catalog,
      trafficTokens,
      checkApiKey,
      logger,
      budget,
      ...(options.ingressIdleMs !== undefined ? { idleMs: options.ingressIdleMs } : {}),
      keepAlive: !fleet,
      wake: (id, call) => sandboxes.wake(id, call),
    })
    const edge = createEdge({
      app,
      ingress,
      tunnel: { agent, catalog, checkApiKey, logger, budget },
      terminal: createTerminalSockets({ agent, sandboxes, checkApiKey, logger, shutdownSignal: shutdown.signal }),
      domain: () => domain ?? 'localhost',
      logger,
      maxConnections: options.maxConnections ?? fdShares.maxConnections,
    })
    const server = edge.server
    // Once closing, a keep-alive connection whose response just ended would idle until its
    // timeout; close it as soon as it is idle so that close() resolves.
    server.on('request', (_req: unknown, res: NodeJS.EventEmitter) => {
      res.once('close', () => {
        if (shutdown.signal.aborted && 'closeIdleConnections' in server) server.closeIdleConnections()
      })
    })
    const host = options.host ?? '127.0.0.1'
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(options.port ?? 7420, host, () => {
        server.off('error', reject)
        resolve()
      })
    }).catch(async (err: unknown) => {
      sandboxes.close()
      await pools.close()
      throw new SandstormError('unavailable', `could not listen on ${host}:${options.port ?? 7420}: ${(err as Error).message}`, { cause: err })
    })
    const { port } = server.address() as AddressInfo
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`
    domain ??= `localhost:${port}`
    logger.info({ url, apiKeyPath }, 'server listening')
    // Once answering: filling them (runc starts, in the background) never holds up the start.
    if (options.defaultPools) pools.keepDefaults(options.defaultPools)

    let closing: Promise<void> | undefined
    const close = async (): Promise<void> => {
      shutdown.abort()
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      if ('closeIdleConnections' in server) server.closeIdleConnections()
      sandboxes.close()
      // Before the fleet closes: its agents run the pooled sandboxes that this destroys.
      await pools.close()
      await fleet?.close()
      // Handlers were aborted above; wait for them so none touches the database after it closes.
      await Promise.allSettled([...inFlight])
      const cut = setTimeout(() => {
        logger.warn({ url, graceMs: closeGraceMs }, 'connections still open after the grace period; cutting them')
        if ('closeAllConnections' in server) server.closeAllConnections()
        edge.cutUpgraded()
      }, closeGraceMs)
      cut.unref()
      if ('closeIdleConnections' in server) server.closeIdleConnections()
      ingress.close()
      await closed
      clearTimeout(cut)
      // Queued command log entries are written while the database is still open.
      commandLog.close()
      db.close()
      logger.info({ url }, 'server closed')
    }
    return {
      url,
      apiKey,
      apiKeyPath,
      routes: app.routes.filter((r) => r.method !== 'ALL' && !r.path.endsWith('*')).map((r) => ({ method: r.method, path: r.path })),
      domain,
      ...(fleet ? { fleet: { port: fleet.port, get joinToken() { return fleet!.joinToken } } } : {}),
      close: () => (closing ??= close()),
    }
  } catch (err) {
    shutdown.abort()
    await fleet?.close()
    db.close()
    throw err
  }
}

/** Adds a new API key to the server's database at `<dataDir>` (a running server accepts it at once). */
export function createApiKeyInDataDir(dataDir: string, form: ApiKeyForm = 'sandstorm'): string {
  const db = openDatabase(dataDir)
  try {
    return createApiKey(db, form)
  } finally {
    db.close()
  }
}
