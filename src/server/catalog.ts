import type { SandboxInfo, SandboxNetwork, SandboxState } from '../shared/index.js'
import type { Statement } from 'better-sqlite3'
import type { CatalogDb } from './db.js'
import type { SandboxLifecycle } from './sandbox-lifecycle.js'

/** A sandbox as the catalog stores it. Times are epoch milliseconds. */
export interface SandboxRecord {
  id: string
  template: string
  runtime: string
  state: SandboxState
  memoryMiB: number
  cpus: number
  pidsMax: number
  /** Its disk quota in MiB; 0 for one made before quotas (none). */
  diskMiB: number
  labels: Record<string, string>
  env: Record<string, string>
  /** 'none' (only lo), or its egress policy and ingress settings. */
  network: SandboxNetwork
  createdAtMs: number
  expiresAtMs: number
  /** What it does at its timeout; absent: it is killed. */
  lifecycle?: SandboxLifecycle
}

/** The sandboxes table: the truth for what the API reports. */
export interface SandboxCatalog {
  insert(record: SandboxRecord): void
  get(id: string): SandboxRecord | undefined
  /** All sandboxes, oldest first, optionally only those in one state. */
  list(state?: SandboxState): SandboxRecord[]
  /** Returns false when there is no such row. */
  update(id: string, fields: Partial<Pick<SandboxRecord, 'runtime' | 'state' | 'expiresAtMs' | 'network' | 'lifecycle'>>): boolean
  /** Returns false when there was no such row. */
  delete(id: string): boolean
  countByState(): Map<SandboxState, number>
  /** Calls `listener` after a row's state is set or the row is deleted (state undefined); returns its removal. */
  watchStates(listener: (id: string, state: SandboxState | undefined) => void): () => void
  /** A fleet's placements: which agent holds each sandbox. Every change of a row's state goes through here, so the watchers hear it. */
  placement: SandboxPlacement
}

/** Where a fleet's sandboxes run: the agent column of the sandboxes table, kept by the catalog. */
export interface SandboxPlacement {
  /**
   * Records the agent a sandbox was placed on. A sandbox with no row yet (a warm pool's) keeps its
   * placement in memory until its row is inserted (its hand-over), which then takes it over.
   */
  place(id: string, agentId: string): void
  /**
   * The agent a sandbox is placed on; null while it is placed nowhere yet, undefined when there is
   * no such row and no placement kept for one to come.
   */
  agentOf(id: string): string | null | undefined
  /** The agents of many sandboxes, in one query: as `agentOf` says for each, ids it would answer undefined for left out. */
  agentsOf(ids: readonly string[]): Map<string, string | null>
  /** Forgets the placement kept for a sandbox with no row (a pooled one destroyed, or whose start failed); a row's goes with the row. */
  release(id: string): void
  /** The sandboxes placed on an agent, with their states, templates and runtimes. */
  on(agentId: string): { id: string; state: SandboxState; template: string; runtime: string }[]
  /** Per agent: how many sandboxes it holds, and their memory and cpus. */
  loads(): Map<string, { sandboxes: number; memoryMiB: number; cpus: number }>
  /** Marks the running and paused sandboxes on `agentId` (on every agent, when absent) lost; returns their ids. */
  markLost(agentId?: string): string[]
  /** Deletes every sandbox placed on an agent (and forgets the pooled ones there); returns the deleted rows' ids. */
  forgetAllOn(agentId: string): string[]
}

interface Row {
  id: string
  template: string
  runtime: string
  state: SandboxState
  memory_mib: number
  cpus: number
  pids_max: number
  disk_mib: number
  labels: string
  env: string
  network: string
  created_at: number
  expires_at: number
  lifecycle: string | null
}

/** A catalog over an open database; statements are prepared once. */
export function createSandboxCatalog(db: CatalogDb): SandboxCatalog {
  const insert = db.prepare(
    `INSERT INTO sandboxes (id, template, runtime, state, memory_mib, cpus, pids_max, disk_mib, labels, env, network, created_at, expires_at, lifecycle, agent_id)
     VALUES (@id, @template, @runtime, @state, @memory_mib, @cpus, @pids_max, @disk_mib, @labels, @env, @network, @created_at, @expires_at, @lifecycle, @agent_id)`,
  )
  const get = db.prepare<[string], Row>('SELECT * FROM sandboxes WHERE id = ?')
  const listAll = db.prepare<[], Row>('SELECT * FROM sandboxes ORDER BY created_at, id')
  const listState = db.prepare<[string], Row>('SELECT * FROM sandboxes WHERE state = ? ORDER BY created_at, id')
  const remove = db.prepare<[string]>('DELETE FROM sandboxes WHERE id = ?')
  const counts = db.prepare<[], { state: SandboxState; n: number }>('SELECT state, count(*) AS n FROM sandboxes GROUP BY state')
  const columnOf = { runtime: 'runtime', state: 'state', expiresAtMs: 'expires_at', network: 'network', lifecycle: 'lifecycle' } as const
  /** An update's statement, prepared once per set of columns. */
  const updates = new Map<string, Statement>()
  const updateOf = (keys: (keyof typeof columnOf)[]): Statement => {
    const key = keys.join(',')
    let statement = updates.get(key)
    if (!statement) updates.set(key, (statement = db.prepare(`UPDATE sandboxes SET ${keys.map((k) => `${columnOf[k]} = @${k}`).join(', ')} WHERE id = @id`)))
    return statement
  }
  const listeners = new Set<(id: string, state: SandboxState | undefined) => void>()
  const told = (id: string, state: SandboxState | undefined): void => {
    for (const listener of listeners) listener(id, state)
  }
  const place = db.prepare('UPDATE sandboxes SET agent_id = ? WHERE id = ?')
  /**
   * Placements of sandboxes that have no row yet: a warm pool's, started on an agent before anyone
   * asked for them. In memory only: a restart destroys pooled sandboxes as orphans anyway. Without
   * it a hand-over's row was placed nowhere, and every call and command event of it was refused.
   */
  const staged = new Map<string, string>()
  const agentOf = db.prepare<[string], { agent_id: string | null }>('SELECT agent_id FROM sandboxes WHERE id = ?')
  const agentsOf = db.prepare<[string], { id: string; agent_id: string | null }>('SELECT id, agent_id FROM sandboxes WHERE id IN (SELECT value FROM json_each(?))')
  const placedOn = db.prepare<[string], { id: string; state: SandboxState; template: string; runtime: string }>('SELECT id, state, template, runtime FROM sandboxes WHERE agent_id = ? ORDER BY created_at, id')
  const loads = db.prepare<[], { agent_id: string; n: number; memory: number; cpus: number }>(
    'SELECT agent_id, count(*) AS n, sum(memory_mib) AS memory, sum(cpus) AS cpus FROM sandboxes WHERE agent_id IS NOT NULL GROUP BY agent_id',
  )
  const lostOn = db.prepare<[string], { id: string }>(`UPDATE sandboxes SET state = 'lost' WHERE agent_id = ? AND state IN ('running', 'paused') RETURNING id`)
  const lostEverywhere = db.prepare<[], { id: string }>(`UPDATE sandboxes SET state = 'lost' WHERE agent_id IS NOT NULL AND state IN ('running', 'paused') RETURNING id`)
  const forgetOn = db.prepare<[string], { id: string }>('DELETE FROM sandboxes WHERE agent_id = ? RETURNING id')
  /** Tells the watchers of each changed row its new state; returns the rows' ids. */
  const changedAll = (rows: { id: string }[], state: SandboxState | undefined): string[] => {
    const ids = rows.map((r) => r.id)
    for (const id of ids) told(id, state)
    return ids
  }

  return {
    insert(r) {
      insert.run({
        id: r.id,
        template: r.template,
        runtime: r.runtime,
        state: r.state,
        memory_mib: r.memoryMiB,
        cpus: r.cpus,
        pids_max: r.pidsMax,
        disk_mib: r.diskMiB,
        labels: JSON.stringify(r.labels),
        env: JSON.stringify(r.env),
        network: JSON.stringify(r.network),
        created_at: r.createdAtMs,
        expires_at: r.expiresAtMs,
        lifecycle: r.lifecycle ? JSON.stringify(r.lifecycle) : null,
        agent_id: staged.get(r.id) ?? null,
      })
      staged.delete(r.id)
    },
    get(id) {
      const row = get.get(id)
      return row && fromRow(row)
    },
    list(state) {
      return (state === undefined ? listAll.all() : listState.all(state)).map(fromRow)
    },
    update(id, fields) {
      const keys = (Object.keys(columnOf) as (keyof typeof columnOf)[]).filter((k) => fields[k] !== undefined)
      if (keys.length === 0) return get.get(id) !== undefined
      const values = {
        ...fields,
        ...(fields.network !== undefined ? { network: JSON.stringify(fields.network) } : {}),
        ...(fields.lifecycle !== undefined ? { lifecycle: JSON.stringify(fields.lifecycle) } : {}),
        id,
      }
      const changed = updateOf(keys).run(values).changes > 0
      if (changed && fields.state !== undefined) told(id, fields.state)
      return changed
    },
    delete(id) {
      const removed = remove.run(id).changes > 0
      if (removed) told(id, undefined)
      return removed
    },
    watchStates(listener) {
      listeners.add(listener)
      return () => void listeners.delete(listener)
    },
    countByState() {
      return new Map(counts.all().map((c) => [c.state, c.n]))
    },
    placement: {
      place(id, agentId) {
        if (place.run(agentId, id).changes === 0) staged.set(id, agentId)
      },
      agentOf: (id) => {
        const row = agentOf.get(id)
        return row === undefined ? staged.get(id) : row.agent_id
      },
      agentsOf(ids) {
        const found = new Map<string, string | null>()
        for (const id of ids) {
          const agentId = staged.get(id)
          if (agentId !== undefined) found.set(id, agentId)
        }
        // A row wins over a kept placement, as in agentOf (insert takes that over anyway).
        if (ids.length > 0) for (const row of agentsOf.all(JSON.stringify(ids))) found.set(row.id, row.agent_id)
        return found
      },
      release: (id) => void staged.delete(id),
      on: (agentId) => placedOn.all(agentId),
      loads: () => new Map(loads.all().map((l) => [l.agent_id, { sandboxes: l.n, memoryMiB: l.memory, cpus: l.cpus }])),
      markLost: (agentId) => changedAll(agentId === undefined ? lostEverywhere.all() : lostOn.all(agentId), 'lost'),
      forgetAllOn(agentId) {
        for (const [id, on] of staged) if (on === agentId) staged.delete(id)
        return changedAll(forgetOn.all(agentId), undefined)
      },
    },
  }
}

/** The API's view of a record (env stays private: it may hold secrets). */
export function toSandboxInfo(r: SandboxRecord): SandboxInfo {
  return {
    id: r.id,
    template: r.template,
    state: r.state,
    runtime: r.runtime,
    memoryMiB: r.memoryMiB,
    cpus: r.cpus,
    pidsMax: r.pidsMax,
    diskMiB: r.diskMiB,
    labels: r.labels,
    network: r.network,
    createdAt: new Date(r.createdAtMs).toISOString(),
    expiresAt: new Date(r.expiresAtMs).toISOString(),
  }
}

function fromRow(row: Row): SandboxRecord {
  return {
    id: row.id,
    template: row.template,
    runtime: row.runtime,
    state: row.state,
    memoryMiB: row.memory_mib,
    cpus: row.cpus,
    pidsMax: row.pids_max,
    diskMiB: row.disk_mib,
    labels: JSON.parse(row.labels) as Record<string, string>,
    env: JSON.parse(row.env) as Record<string, string>,
    network: JSON.parse(row.network) as SandboxNetwork,
    createdAtMs: row.created_at,
    expiresAtMs: row.expires_at,
    ...(row.lifecycle ? { lifecycle: JSON.parse(row.lifecycle) as SandboxLifecycle } : {}),
  }
}
