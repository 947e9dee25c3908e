import type { CatalogDb } from '../db.js'

/** How many ready sandboxes one template keeps. */
export interface PoolConfig {
  template: string
  /** Ready sandboxes kept at all times (refilled after every hand-over). */
  min: number
  /** Most pooled sandboxes at once; the pool grows toward it after misses. */
  max: number
}

/** Pool configs, kept in the catalog database so that they outlive a restart. */
export interface PoolStore {
  list(): PoolConfig[]
  put(config: PoolConfig): void
  /** Returns false when there was no such pool. */
  delete(template: string): boolean
}

/**
 * Creates the `pools` table if it is missing. It is created here rather than as a numbered
 * migration in db.ts because that file's migration list was being extended by the fleet work at
 * the same time; `IF NOT EXISTS` makes this safe to run on every start and to move there later.
 */
export function createPoolStore(db: CatalogDb): PoolStore {
  db.exec(`CREATE TABLE IF NOT EXISTS pools (
    template TEXT PRIMARY KEY,
    min INTEGER NOT NULL,
    max INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  )`)
  const list = db.prepare<[], PoolConfig>('SELECT template, min, max FROM pools ORDER BY template')
  const put = db.prepare(
    `INSERT INTO pools (template, min, max, updated_at) VALUES (@template, @min, @max, @updatedAt)
     ON CONFLICT (template) DO UPDATE SET min = excluded.min, max = excluded.max, updated_at = excluded.updated_at`,
  )
  const remove = db.prepare<[string]>('DELETE FROM pools WHERE template = ?')
  return {
    list: () => list.all(),
    put: (config) => void put.run({ ...config, updatedAt: Date.now() }),
    delete: (template) => remove.run(template).changes > 0,
  }
}
