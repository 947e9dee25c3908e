import { join } from 'node:path'
import Database from 'better-sqlite3'
import { prepareDataDir, SandstormError } from '../shared/index.js'

/** An open catalog database. */
export type CatalogDb = Database.Database

/**
 * Schema changes in order; the database's `user_version` is how many have been applied. Append
 * only: an applied migration is never edited, so every existing data dir can be brought forward.
 */
const migrations: string[] = [
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     sha256 TEXT NOT NULL UNIQUE,
     created_at INTEGER NOT NULL
   );
   CREATE TABLE sandboxes (
     id TEXT PRIMARY KEY,
     template TEXT NOT NULL,
     runtime TEXT NOT NULL,
     state TEXT NOT NULL,
     memory_mib INTEGER NOT NULL,
     cpus REAL NOT NULL,
     pids_max INTEGER NOT NULL,
     labels TEXT NOT NULL,
     env TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL
   );
   CREATE INDEX sandboxes_state ON sandboxes (state);`,
  // Snapshots: the agent's record kept whole as JSON, with the columns the server looks up by.
  `CREATE TABLE snapshots (
     id TEXT PRIMARY KEY,
     parent_id TEXT,
     sandbox_id TEXT NOT NULL,
     template TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     record TEXT NOT NULL
   );
   CREATE INDEX snapshots_parent ON snapshots (parent_id);`,
  // The fleet: which agent holds each sandbox, the agents seen, and every command run (central logs).
  `ALTER TABLE sandboxes ADD COLUMN agent_id TEXT;
   CREATE INDEX sandboxes_agent ON sandboxes (agent_id);
   CREATE TABLE agents (
     id TEXT PRIMARY KEY,
     hostname TEXT NOT NULL,
     info TEXT NOT NULL,
     labels TEXT NOT NULL,
     joined_at INTEGER NOT NULL,
     last_seen_at INTEGER NOT NULL
   );
   CREATE TABLE command_logs (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     sandbox_id TEXT NOT NULL,
     agent_id TEXT NOT NULL,
     argv TEXT NOT NULL,
     exit_code INTEGER NOT NULL,
     duration_ms INTEGER NOT NULL,
     output_bytes INTEGER NOT NULL,
     ended_at INTEGER NOT NULL
   );
   CREATE INDEX command_logs_sandbox ON command_logs (sandbox_id, id);`,
  // Networking: each sandbox's network settings as JSON; sandboxes from before it had only lo.
  `ALTER TABLE sandboxes ADD COLUMN network TEXT NOT NULL DEFAULT '"none"';`,
  // A sandbox made before disk quotas has none: 0.
  `ALTER TABLE sandboxes ADD COLUMN disk_mib INTEGER NOT NULL DEFAULT 0;`,
  // What a sandbox does at its timeout (pause or be killed) and whether traffic wakes it, as JSON;
  // NULL for one made before (killed). Snapshots deleted while something still stands on them
  // (E2B deletes at once) are retired: hidden, and removed once nothing does.
  `ALTER TABLE sandboxes ADD COLUMN lifecycle TEXT;
   CREATE TABLE retired_snapshots (
     id TEXT PRIMARY KEY,
     retired_at INTEGER NOT NULL
   );`,
  // Usage samples taken every few seconds for each sandbox's life (E2B's getMetrics), kept by sandbox and time.
  `CREATE TABLE sandbox_usage (
     sandbox_id TEXT NOT NULL,
     at INTEGER NOT NULL,
     cpus REAL NOT NULL,
     cpu_pct REAL NOT NULL,
     mem_used INTEGER NOT NULL,
     mem_limit INTEGER NOT NULL,
     disk_used INTEGER NOT NULL,
     disk_limit INTEGER NOT NULL,
     pids INTEGER NOT NULL,
     PRIMARY KEY (sandbox_id, at)
   ) WITHOUT ROWID;`,
  // The fleet: which agent holds each snapshot (the one that took it), so that no other can claim it.
  `CREATE TABLE snapshot_agents (
     snapshot_id TEXT PRIMARY KEY,
     agent_id TEXT NOT NULL
   ) WITHOUT ROWID;`,
]

/** Opens (creating if needed) `<dataDir>/sandstorm.db` in WAL mode and applies pending migrations. */
export function openDatabase(dataDir: string): CatalogDb {
  // 0700 and this user's: it holds the catalog and the keys.
  prepareDataDir(dataDir)
  const db = new Database(join(dataDir, 'sandstorm.db'))
  try {
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = NORMAL')
    // Another process (a CLI reading the catalog) may hold the lock for a moment.
    db.pragma('busy_timeout = 5000')
    migrate(db)
    return db
  } catch (err) {
    db.close()
    throw err
  }
}

function migrate(db: CatalogDb): void {
  const applied = db.pragma('user_version', { simple: true }) as number
  if (applied > migrations.length) {
    throw new SandstormError(
      'failed_precondition',
      `the database has schema version ${applied}: expected at most ${migrations.length} (is it from a newer Sandstorm?)`,
    )
  }
  for (let version = applied; version < migrations.length; version++) {
    db.transaction(() => {
      db.exec(migrations[version]!)
      db.pragma(`user_version = ${version + 1}`)
    })()
  }
}
