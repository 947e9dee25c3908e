/** Central logs: every command run in every sandbox of the fleet, kept in SQLite. */
import type { CommandLogEntry } from '../../shared/index.js'
import type { CatalogDb } from '../db.js'

/** The command_logs table. */
export interface CommandLog {
  record(entry: Omit<CommandLogEntry, 'endedAt'>): void
  /** Newest last; at most `limit`, optionally of one sandbox. */
  list(filter?: { sandboxId?: string; limit?: number }): CommandLogEntry[]
}

interface Row {
  sandbox_id: string
  agent_id: string
  argv: string
  exit_code: number
  duration_ms: number
  output_bytes: number
  ended_at: number
}

/** The log over an open database. */
export function createCommandLog(db: CatalogDb): CommandLog {
  const insert = db.prepare(
    `INSERT INTO command_logs (sandbox_id, agent_id, argv, exit_code, duration_ms, output_bytes, ended_at)
     VALUES (?, ?, ?, ?, ?, ?, ?)`,
  )
  const all = db.prepare<[number], Row>('SELECT * FROM (SELECT * FROM command_logs ORDER BY id DESC LIMIT ?) ORDER BY id')
  const ofSandbox = db.prepare<[string, number], Row>(
    'SELECT * FROM (SELECT * FROM command_logs WHERE sandbox_id = ? ORDER BY id DESC LIMIT ?) ORDER BY id',
  )
  return {
    record(e) {
      insert.run(e.sandboxId, e.agentId, JSON.stringify(e.argv), e.exitCode, Math.round(e.durationMs), e.outputBytes, Date.now())
    },
    list(filter = {}) {
      const limit = filter.limit ?? 1000
      const rows = filter.sandboxId ? ofSandbox.all(filter.sandboxId, limit) : all.all(limit)
      return rows.map((r) => ({
        sandboxId: r.sandbox_id,
        agentId: r.agent_id,
        argv: JSON.parse(r.argv) as string[],
        exitCode: r.exit_code,
        durationMs: r.duration_ms,
        outputBytes: r.output_bytes,
        endedAt: new Date(r.ended_at).toISOString(),
      }))
    },
  }
}
