import type { AgentSnapshot } from '../agent/index.js'
import type { SnapshotInfo } from '../shared/index.js'
import type { CatalogDb } from './db.js'

/** The snapshots table: the server's record of every snapshot its agent holds. */
export interface SnapshotCatalog {
  insert(snapshot: AgentSnapshot): void
  get(id: string): AgentSnapshot | undefined
  list(): AgentSnapshot[]
  /** Forgets the snapshot, retired or not. */
  delete(id: string): boolean
  /** Marks a snapshot deleted while something still stands on it: hidden from now on, removed when free. */
  retire(id: string): void
  /** The retired snapshots, still held by the agent. */
  retired(): Set<string>
}

interface Row {
  id: string
  record: string
}

/** A catalog over an open database (the table comes from the migrations in db.ts). */
export function createSnapshotCatalog(db: CatalogDb): SnapshotCatalog {
  const insert = db.prepare('INSERT OR REPLACE INTO snapshots (id, parent_id, sandbox_id, template, created_at, record) VALUES (?, ?, ?, ?, ?, ?)')
  const get = db.prepare<[string], Row>('SELECT id, record FROM snapshots WHERE id = ?')
  const list = db.prepare<[], Row>('SELECT id, record FROM snapshots ORDER BY created_at, id')
  const remove = db.prepare<[string]>('DELETE FROM snapshots WHERE id = ?')
  const retire = db.prepare<[string, number]>('INSERT OR IGNORE INTO retired_snapshots (id, retired_at) VALUES (?, ?)')
  const unretire = db.prepare<[string]>('DELETE FROM retired_snapshots WHERE id = ?')
  const retired = db.prepare<[], { id: string }>('SELECT id FROM retired_snapshots')
  // A record written before disk quotas has no diskMiB: 0, none.
  const parse = (row: Row): AgentSnapshot => {
    const s = JSON.parse(row.record) as AgentSnapshot
    return { ...s, diskMiB: s.diskMiB ?? 0 }
  }
  return {
    insert: (s) => void insert.run(s.id, s.parentId, s.sandboxId, s.template, Date.parse(s.createdAt), JSON.stringify(s)),
    get: (id) => {
      const row = get.get(id)
      return row && parse(row)
    },
    list: () => list.all().map(parse),
    delete: (id) => {
      unretire.run(id)
      return remove.run(id).changes > 0
    },
    retire: (id) => void retire.run(id, Date.now()),
    retired: () => new Set(retired.all().map((r) => r.id)),
  }
}

/** The API's view (env stays private: it may hold secrets). */
export function toSnapshotInfo(s: AgentSnapshot): SnapshotInfo {
  const { env: _env, ...info } = s
  return info
}
