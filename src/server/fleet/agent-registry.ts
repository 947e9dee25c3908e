/** The agents the server knows: live ones with their link and metrics, lost ones with their last word. */
import type { AgentApi, AgentInfo, AgentSandbox } from '../../agent/index.js'
import { SandstormError } from '../../shared/index.js'
import type { AgentMetrics, Logger } from '../../shared/index.js'
import type { SandboxCatalog } from '../catalog.js'
import type { CatalogDb } from '../db.js'
import type { AgentConnection } from './agent-connection.js'
import type { Heartbeat } from './agent-messages.js'
import { createRemoteAgent } from './remote-agent.js'
import type { Revocations } from './revocations.js'

/** An agent as the registry holds it. */
export interface AgentEntry {
  id: string
  hostname: string
  info: AgentInfo
  labels: Record<string, string>
  templates: string[]
  state: 'live' | 'lost'
  lastHeartbeatMs: number
  metrics: AgentMetrics | null
  /** Calls to the agent; set while live. */
  api: AgentApi | null
  conn: AgentConnection | null
}

/** What the registry is told when an agent registers. */
export interface Registration {
  info: AgentInfo
  labels: Record<string, string>
  templates: string[]
  sandboxes: AgentSandbox[]
}

/** The registry. */
export interface AgentRegistry {
  /** A new Control stream registered: the agent is live and its sandboxes are adopted back. */
  attach(conn: AgentConnection, reg: Registration): AgentEntry
  /** A checked heartbeat (agent-messages.ts): the agent is alive, with these metrics. */
  heartbeat(agentId: string, hb: Heartbeat): void
  /** The Control stream of this connection ended: the agent is lost (unless a newer link replaced it). */
  detach(conn: AgentConnection, reason: string): void
  get(agentId: string): AgentEntry | undefined
  list(): AgentEntry[]
  /** Records an agent that has just joined (it is live once its Control stream registers). */
  admit(agentId: string, hostname: string): void
  /** Has this agent joined this server. */
  known(agentId: string): boolean
  /**
   * Revokes an agent's certificate and forgets it: its link is cut and every later connection of
   * it refused. `failed_precondition` while the catalog places sandboxes on it, unless `force`
   * (then they are forgotten too, and destroyed as orphans should the host join again).
   */
  remove(agentId: string, options?: { force?: boolean }): void
  /** Has this agent's certificate been revoked. */
  revoked(agentId: string): boolean
  /**
   * The sandboxes of `sandboxes` this agent may list or report on, in one query: those the catalog
   * places there, or knows no more (gone since, or orphans); never another agent's.
   */
  mayReportOn<T extends { id: string }>(agentId: string, sandboxes: readonly T[]): T[]
  /** Does the catalog place this sandbox on this agent now: what it reports of its commands is kept only then. */
  holds(agentId: string, sandboxId: string): boolean
  /** The api of a live agent, or `unavailable` saying since when it is lost. */
  live(agentId: string, what: string): AgentApi
  close(): void
}

/** Options of createAgentRegistry. */
export interface AgentRegistryOptions {
  db: CatalogDb
  /** The sandboxes, with where each is placed. */
  catalog: SandboxCatalog
  logger: Logger
  /** An agent silent this long is lost. @default 15_000 */
  lostAfterMs?: number
  /** Revoked agents. @default none, kept in memory only */
  revocations?: Revocations
}

/** Creates the registry; agents in the database start as lost until they reconnect. */
export function createAgentRegistry(options: AgentRegistryOptions): AgentRegistry {
  const { db, catalog, logger } = options
  const lostAfterMs = options.lostAfterMs ?? 15_000
  const entries = new Map<string, AgentEntry>()
  const timers = new Map<string, NodeJS.Timeout>()
  const upsert = db.prepare(
    `INSERT INTO agents (id, hostname, info, labels, joined_at, last_seen_at) VALUES (@id, @hostname, @info, @labels, @now, @now)
     ON CONFLICT (id) DO UPDATE SET hostname = @hostname, info = @info, labels = @labels, last_seen_at = @now`,
  )
  const seen = db.prepare('UPDATE agents SET last_seen_at = ? WHERE id = ?')
  const dropAgent = db.prepare('DELETE FROM agents WHERE id = ?')
  const revocations = options.revocations ?? inMemoryRevocations()
  // The sandboxes' rows are the catalog's: its watchers (envd's streams and process records) hear each change made here.
  const placement = catalog.placement

  // Until they reconnect, the agents of the last run and their sandboxes are lost, not gone.
  placement.markLost()
  for (const row of db.prepare<[], { id: string; hostname: string; info: string; labels: string; last_seen_at: number }>('SELECT * FROM agents').all()) {
    entries.set(row.id, {
      id: row.id,
      hostname: row.hostname,
      info: JSON.parse(row.info) as AgentInfo,
      labels: JSON.parse(row.labels) as Record<string, string>,
      templates: [],
      state: 'lost',
      lastHeartbeatMs: row.last_seen_at,
      metrics: null,
      api: null,
      conn: null,
    })
  }

  /** The catalog places the sandbox on this agent, or knows it no more: never another agent's, nor one placed nowhere yet. */
  const mayReportOn = <T extends { id: string }>(agentId: string, sandboxes: readonly T[]): T[] => {
    const holders = placement.agentsOf(sandboxes.map((s) => s.id))
    return sandboxes.filter((s) => {
      const holder = holders.get(s.id)
      return holder === undefined || holder === agentId
    })
  }

  const lose = (entry: AgentEntry, reason: string): void => {
    clearTimeout(timers.get(entry.id))
    timers.delete(entry.id)
    if (entry.state === 'lost') return
    entry.state = 'lost'
    entry.conn?.fail(new SandstormError('unavailable', `agent "${entry.id}" was lost (${reason})`))
    entry.conn = null
    entry.api = null
    const lost = placement.markLost(entry.id)
    logger.warn({ agentId: entry.id, reason, sandboxes: lost.length }, 'agent lost; its sandboxes are marked lost')
  }

  const arm = (entry: AgentEntry): void => {
    clearTimeout(timers.get(entry.id))
    const timer = setTimeout(() => lose(entry, `no heartbeat for ${lostAfterMs} ms`), lostAfterMs)
    timer.unref()
    timers.set(entry.id, timer)
  }

  const adopt = (entry: AgentEntry, api: AgentApi, reported: AgentSandbox[]): void => {
    const onHost = new Map(reported.map((s) => [s.id, s]))
    for (const row of placement.on(entry.id)) {
      const sandbox = onHost.get(row.id)
      if (sandbox) {
        catalog.update(row.id, { state: sandbox.status })
        logger.info({ agentId: entry.id, sandboxId: row.id, state: sandbox.status }, 'adopted a sandbox back')
      } else if (row.state !== 'starting') {
        catalog.delete(row.id)
        logger.warn({ agentId: entry.id, sandboxId: row.id }, 'sandbox is gone from its agent; removed from the catalog')
      }
    }
    const known = placement.agentsOf(reported.map((s) => s.id))
    for (const sandbox of reported) {
      if (known.has(sandbox.id)) continue
      // A sandbox no catalog row knows: a create that died half-way. Nothing can reach it.
      api.destroy(sandbox.id).then(
        () => logger.warn({ agentId: entry.id, sandboxId: sandbox.id }, 'destroyed an orphan sandbox'),
        (err: unknown) => logger.error({ agentId: entry.id, sandboxId: sandbox.id, err }, 'could not destroy an orphan sandbox'),
      )
    }
  }

  return {
    attach(conn, reg) {
      const previous = entries.get(conn.agentId)
      if (previous?.conn && previous.conn !== conn) previous.conn.fail(new SandstormError('unavailable', `agent "${conn.agentId}" reconnected`))
      const api = createRemoteAgent(conn, reg.info)
      const entry: AgentEntry = {
        id: conn.agentId,
        hostname: reg.info.hostname,
        info: reg.info,
        labels: reg.labels,
        templates: reg.templates,
        state: 'live',
        lastHeartbeatMs: Date.now(),
        metrics: previous?.metrics ?? null,
        api,
        conn,
      }
      entries.set(entry.id, entry)
      upsert.run({ id: entry.id, hostname: entry.hostname, info: JSON.stringify(reg.info), labels: JSON.stringify(reg.labels), now: Date.now() })
      adopt(entry, api, reg.sandboxes)
      arm(entry)
      logger.info({ agentId: entry.id, hostname: entry.hostname, sandboxes: reg.sandboxes.length, templates: reg.templates.length }, 'agent registered')
      return entry
    },
    heartbeat(agentId, hb) {
      const entry = entries.get(agentId)
      if (!entry || entry.state !== 'live') return
      entry.lastHeartbeatMs = Date.now()
      entry.metrics = hb.metrics
      if (hb.templates) entry.templates = hb.templates
      seen.run(entry.lastHeartbeatMs, agentId)
      arm(entry)
    },
    detach(conn, reason) {
      const entry = entries.get(conn.agentId)
      conn.fail(new SandstormError('unavailable', `agent "${conn.agentId}" disconnected`))
      if (entry && entry.conn === conn) lose(entry, reason)
    },
    admit(agentId, hostname) {
      const info: AgentInfo = { id: agentId, hostname, runtimes: [], cpus: 0, memoryMiB: 0 }
      upsert.run({ id: agentId, hostname, info: JSON.stringify(info), labels: '{}', now: Date.now() })
      entries.set(agentId, { id: agentId, hostname, info, labels: {}, templates: [], state: 'lost', lastHeartbeatMs: Date.now(), metrics: null, api: null, conn: null })
    },
    remove(agentId, o = {}) {
      const entry = entries.get(agentId)
      if (!entry) throw new SandstormError('not_found', `agent "${agentId}" not found`)
      const n = placement.on(agentId).length
      if (n > 0 && !o.force) {
        throw new SandstormError('failed_precondition', `agent "${agentId}" holds ${n} sandbox${n === 1 ? '' : 'es'}: expected none (remove them first, or force to forget them)`)
      }
      revocations.add(agentId)
      clearTimeout(timers.get(agentId))
      timers.delete(agentId)
      entries.delete(agentId)
      entry.conn?.fail(new SandstormError('unavailable', `agent "${agentId}" was removed from the fleet`))
      const forgotten = placement.forgetAllOn(agentId)
      dropAgent.run(agentId)
      logger.warn({ agentId, hostname: entry.hostname, sandboxesForgotten: forgotten.length }, 'agent removed; its certificate is revoked')
    },
    revoked: (id) => revocations.has(id),
    mayReportOn,
    holds: (agentId, sandboxId) => placement.agentOf(sandboxId) === agentId,
    known: (id) => entries.has(id),
    get: (id) => entries.get(id),
    list: () => [...entries.values()],
    live(agentId, what) {
      const entry = entries.get(agentId)
      if (entry?.state === 'live' && entry.api) return entry.api
      const since = entry ? `; last heard from ${Math.round((Date.now() - entry.lastHeartbeatMs) / 1000)} s ago` : ''
      throw new SandstormError('unavailable', `${what} is on agent "${agentId}", which is lost${since}: try again once it reconnects`)
    },
    close() {
      for (const timer of timers.values()) clearTimeout(timer)
      timers.clear()
      for (const entry of entries.values()) entry.conn?.fail(new SandstormError('unavailable', 'the server is closing'))
    },
  }
}

function inMemoryRevocations(): Revocations {
  const revoked = new Set<string>()
  return { has: (id) => revoked.has(id), add: (id) => void revoked.add(id) }
}
