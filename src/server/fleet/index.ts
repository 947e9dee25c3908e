/** The fleet: agents on other hosts that dial this server over gRPC, and the router that sends work to them. */
import { join } from 'node:path'
import type { AgentApi } from '../../agent/index.js'
import { SandstormError } from '../../shared/index.js'
import type { Logger } from '../../shared/index.js'
import type { SandboxCatalog } from '../catalog.js'
import type { CatalogDb } from '../db.js'
import { createAgentRegistry } from './agent-registry.js'
import type { AgentRegistry } from './agent-registry.js'
import { createCommandLog } from './command-log.js'
import type { CommandLog } from './command-log.js'
import { parseJoinToken } from '../../proto/index.js'
import { ensureJoinToken, rotateJoinToken } from './join-token.js'
import { startLinkServer } from './link-service.js'
import { loadFleetPki } from './pki.js'
import { loadRevocations } from './revocations.js'
import { createFleetRouter } from './router.js'
import type { SchedulerOptions } from './scheduler.js'
import type { LinkRateOptions } from './link-rates.js'

export { parseJoinToken, insecureHeaders, serverCommonName } from '../../proto/index.js'
export { fleetRoutes } from './routes.js'
export type { CommandLog } from './command-log.js'
export type { AgentRegistry } from './agent-registry.js'
export type { LinkRateOptions } from './link-rates.js'
export { createCommandLog } from './command-log.js'
export { localAgentView, withCommandLog } from './local-command-log.js'

/** Options of the fleet, given to startServer. */
export interface FleetOptions {
  /** Address agents dial. @default '127.0.0.1' */
  host?: string
  /** @default 7421 (0 picks a free port) */
  port?: number
  /** Plain-text link, token on every call: only when asked for. @default false */
  insecure?: boolean
  /** An agent silent this long is lost; more than `heartbeatMs`. @default 15_000 */
  lostAfterMs?: number
  /** The heartbeat interval agents are told to keep. @default unset: each agent keeps its own --heartbeat-ms (5_000) */
  heartbeatMs?: number
  /** How often an agent may beat and open a link (heartbeats closer than half of `heartbeatMs` are dropped). @default link-rates.ts's */
  linkRates?: LinkRateOptions
  scheduler?: SchedulerOptions
  /** How long a call made of every agent (list, templates, usage samples) waits for each one's answer. @default 30_000 */
  answerTimeoutMs?: number
}

/** A started fleet. */
export interface Fleet {
  /** The router: an AgentApi over every agent. */
  agent: AgentApi
  registry: AgentRegistry
  commandLog: CommandLog
  /** The port agents dial. */
  port: number
  /** What `sandstorm agent --token` takes now (also in `<dataDir>/fleet/join-token`). */
  readonly joinToken: string
  /** Replaces the join token: the old one admits nothing more; agents that joined keep their certificates. */
  rotateJoinToken(): string
  close(): Promise<void>
}

/** Loads (or creates) the CA and join token in `<dataDir>/fleet` and listens for agents. */
export async function startFleet(options: FleetOptions & { dataDir: string; db: CatalogDb; catalog: SandboxCatalog; logger: Logger }): Promise<Fleet> {
  const lostAfterMs = options.lostAfterMs ?? 15_000
  // An agent told to beat this slowly would be declared lost between two of its heartbeats.
  if (options.heartbeatMs !== undefined && options.heartbeatMs >= lostAfterMs) {
    throw new SandstormError('invalid_argument', `the heartbeat interval (${options.heartbeatMs} ms) must be shorter than the time after which a silent agent is lost (${lostAfterMs} ms)`)
  }
  const dir = join(options.dataDir, 'fleet')
  const pki = options.insecure ? null : await loadFleetPki(dir)
  let joinToken = ensureJoinToken(dir, pki?.caSha256 ?? null)
  let secret = parseJoinToken(joinToken).secret
  const registry = createAgentRegistry({ db: options.db, catalog: options.catalog, logger: options.logger.child({ component: 'fleet' }), lostAfterMs, revocations: loadRevocations(dir) })
  const commandLog = createCommandLog(options.db)
  const link = await startLinkServer({
    host: options.host ?? '127.0.0.1',
    port: options.port ?? 7421,
    registry,
    commandLog,
    logger: options.logger,
    secret: () => secret,
    pki,
    heartbeatMs: options.heartbeatMs,
    rates: options.linkRates,
  })
  return {
    agent: createFleetRouter({ registry, db: options.db, catalog: options.catalog, logger: options.logger.child({ component: 'fleet' }), scheduler: options.scheduler, answerTimeoutMs: options.answerTimeoutMs }),
    registry,
    commandLog,
    port: link.port,
    get joinToken() {
      return joinToken
    },
    rotateJoinToken() {
      joinToken = rotateJoinToken(dir, pki?.caSha256 ?? null)
      secret = parseJoinToken(joinToken).secret
      options.logger.warn({ component: 'fleet' }, 'join token replaced: the old one admits no agent from now on')
      return joinToken
    },
    async close() {
      await link.close()
      registry.close()
    },
  }
}
