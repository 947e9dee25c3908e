/** Central logs: every command run in every sandbox of the fleet, kept in SQLite. */
import type { CommandLogEntry } from '../../shared/index.js'
import type { CatalogDb } from '../db.js'

/** The command_logs table. */
export interface CommandLog {
  /** Queues the entry (its end is now); it is written within `flushMs`, or by list, flush or close. */
  record(entry: Omit<CommandLogEntry, 'endedAt'>): void
  /** Newest last; at most `limit`, optionally of one sandbox. Writes what is queued first. */
  list(filter?: { sandboxId?: string; limit?: number }): CommandLogEntry[]
  /** Writes what is queued, in one transaction. */
  flush(): void
  /** Writes what is queued and stops the timer: called before the database closes. */
  close(): void
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

/** Options of createCommandLog. */
export interface CommandLogOptions {
  /** How long a recorded entry may wait to be written with the ones after it. */
  flushMs?: number
  /** Rows kept: past this, the oldest are deleted. @default 1,000,000 */
  maxRows?: number
  /**
   * Rows kept of one sandbox: past this, its oldest are deleted, so that one sandbox running
   * commands (or file calls, each a helper's command) in a loop cannot push every other
   * sandbox's history out of the log. @default 20,000
   */
  maxRowsPerSandbox?: number
}

/** Characters of a command's argv kept in its row (an argv may be a megabyte); a cut one ends with "…". */
export const maxArgvChars = 2048

/** Words of a command's argv kept in its row (an argv may be millions of empty words); a cut one ends with the word "…". */
export const maxArgvWords = 256

/**
 * The most a row's argv takes as JSON, which both bounds above keep it under: each kept character
 * takes at most 6 (`\u0001`), each word 3 more (its quotes and comma), and the marks of a cut.
 */
export const maxArgvJsonChars = 2 + maxArgvChars * 6 + (maxArgvWords + 1) * 3 + 8

/** An argv cut to `maxArgvChars` characters and `maxArgvWords` words in all, marked where cut. */
function keptArgv(argv: string[]): string[] {
  const kept: string[] = []
  let left = maxArgvChars
  for (const word of argv) {
    if (kept.length === maxArgvWords) {
      kept.push('…')
      break
    }
    if (word.length <= left) {
      kept.push(word)
      left -= word.length
      continue
    }
    kept.push(`${word.slice(0, left)}…`)
    break
  }
  return kept
}

type Queued = [sandboxId: string, agentId: string, argv: string, exitCode: number, durationMs: number, outputBytes: number, endedAt: number]

/**
 * The log over an open database. Entries are written in batches: under load every command ends
 * with one, and an INSERT of its own (a transaction and a WAL append each) costs the server about
 * ten times its share of a batch's. A reader never misses one: list writes the queue first.
 */
export function createCommandLog(db: CatalogDb, options: CommandLogOptions = {}): CommandLog {
  const flushMs = options.flushMs ?? 100
  const insert = db.prepare(
    `INSERT INTO command_logs (sandbox_id, agent_id, argv, exit_code, duration_ms, output_bytes, ended_at)
     VALUES (?, ?, ?, ?, ?, ?, ?)`,
  )
  const insertAll = db.transaction((rows: Queued[]) => {
    for (const row of rows) insert.run(...row)
  })
  const all = db.prepare<[number], Row>('SELECT * FROM (SELECT * FROM command_logs ORDER BY id DESC LIMIT ?) ORDER BY id')
  const ofSandbox = db.prepare<[string, number], Row>(
    'SELECT * FROM (SELECT * FROM command_logs WHERE sandbox_id = ? ORDER BY id DESC LIMIT ?) ORDER BY id',
  )
  const maxRows = options.maxRows ?? 1_000_000
  // Every command of every sandbox lands here (the file API's helpers too): the oldest go, in
  // batches, once the table holds a tenth more than it keeps.
  // By count, not by id: the trims of loud sandboxes leave gaps in the ids.
  const oldestKept = db.prepare<[number], { id: number }>('SELECT id FROM command_logs ORDER BY id DESC LIMIT 1 OFFSET ?')
  // In batches, one per flush: a table never pruned (from before this) may hold millions too many,
  // and one DELETE of them all would hold the event loop for seconds.
  const pruneBatch = 10_000
  const dropBefore = db.prepare(`DELETE FROM command_logs WHERE id IN (SELECT id FROM command_logs WHERE id <= ? ORDER BY id LIMIT ${pruneBatch})`)
  let sincePrune = Number.POSITIVE_INFINITY
  const prune = (): void => {
    const kept = oldestKept.get(maxRows - 1)?.id
    const dropped = kept !== undefined ? dropBefore.run(kept - 1).changes : 0
    // A full batch: more may be left, and the next flush goes on.
    sincePrune = dropped === pruneBatch ? Number.POSITIVE_INFINITY : 0
  }
  const maxRowsPerSandbox = options.maxRowsPerSandbox ?? 20_000
  // Rows of a sandbox older than its newest maxRowsPerSandbox: by its index (sandbox_id, id).
  const dropOfSandbox = db.prepare<[string, string, number]>(
    'DELETE FROM command_logs WHERE sandbox_id = ? AND id < (SELECT id FROM command_logs WHERE sandbox_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)',
  )
  // Rows written per sandbox since its last trim: a sandbox is trimmed once it wrote a tenth of its share.
  const sinceTrim = new Map<string, number>()
  const trimSandboxes = (rows: Queued[]): void => {
    // One count per sandbox that wrote since: the log never hears of a sandbox's end, so the map
    // starts over past 10,000 of them (a count lost only delays that sandbox's next trim).
    if (sinceTrim.size > 10_000) sinceTrim.clear()
    for (const [sandboxId] of rows) {
      const written = (sinceTrim.get(sandboxId) ?? 0) + 1
      if (written < Math.max(1, maxRowsPerSandbox / 10)) {
        sinceTrim.set(sandboxId, written)
        continue
      }
      // After the batch's insert: its own rows count.
      dropOfSandbox.run(sandboxId, sandboxId, maxRowsPerSandbox - 1)
      sinceTrim.delete(sandboxId)
    }
  }
  let queue: Queued[] = []
  let timer: NodeJS.Timeout | undefined
  let closed = false

  const flush = (): void => {
    clearTimeout(timer)
    timer = undefined
    if (queue.length === 0) return
    const rows = queue
    queue = []
    // A database closed under the server (it is shutting down) has nowhere to keep them.
    if (!db.open) return
    insertAll(rows)
    trimSandboxes(rows)
    sincePrune += rows.length
    if (sincePrune > Math.max(1, maxRows / 10)) prune()
  }
  const flushBestEffort = (): void => {
    try {
      flush()
    } catch {
      // The batch is lost, as a single INSERT that failed was: the log is best effort.
    }
  }

  return {
    record(e) {
      if (closed) return
      queue.push([e.sandboxId, e.agentId, JSON.stringify(keptArgv(e.argv)), e.exitCode, Math.round(e.durationMs), e.outputBytes, Date.now()])
      if (!timer) {
        timer = setTimeout(flushBestEffort, flushMs)
        // Pending entries never keep the process up; close writes them.
        timer.unref()
      }
    },
    list(filter = {}) {
      flush()
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
    flush,
    close() {
      closed = true
      flushBestEffort()
    },
  }
}
