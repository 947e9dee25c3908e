import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { openDatabase } from '../db.js'
import { createCommandLog, maxArgvChars, maxArgvJsonChars, maxArgvWords } from './command-log.js'

/** Runs `body` on a fresh database, removed after. */
async function withDb(body: (db: ReturnType<typeof openDatabase>) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-command-log-'))
  const db = openDatabase(dir)
  try {
    await body(db)
  } finally {
    db.close()
    await rm(dir, { recursive: true, force: true })
  }
}

describe('the central command log', () => {
  it('keeps its newest rows only, and a command\'s argv cut to its bound', async () => {
    await withDb(async (db) => {
      const log = createCommandLog(db, { maxRows: 100 })
      for (let i = 0; i < 1000; i++) {
        log.record({ sandboxId: 'sb-a', agentId: 'local', argv: ['echo', String(i)], exitCode: 0, durationMs: 1, outputBytes: 1 })
        if (i % 7 === 0) log.flush()
      }
      log.record({ sandboxId: 'sb-a', agentId: 'local', argv: ['python3', '-c', 'x'.repeat(1024 * 1024)], exitCode: 0, durationMs: 1, outputBytes: 0 })
      const rows = log.list({ limit: 100_000 })
      assert.ok(rows.length <= 111, `${rows.length} rows kept`)
      assert.deepEqual(rows.at(-2)!.argv, ['echo', '999'])
      const long = rows.at(-1)!.argv
      assert.equal(long.join('').length, maxArgvChars + 1)
      assert.ok(long[2]!.endsWith('…'))
      log.close()
    })
  })

  it("keeps a share of rows per sandbox: one that runs commands in a loop cannot push another's out", async () => {
    await withDb(async (db) => {
      const log = createCommandLog(db, { maxRows: 1000, maxRowsPerSandbox: 50 })
      const entry = (sandboxId: string, i: number) => ({ sandboxId, agentId: 'local', argv: ['echo', String(i)], exitCode: 0, durationMs: 1, outputBytes: 1 })
      for (let i = 0; i < 5; i++) log.record(entry('sb-quiet', i))
      for (let i = 0; i < 5000; i++) {
        log.record(entry('sb-loud', i))
        if (i % 10 === 0) log.flush()
      }
      assert.deepEqual(log.list({ sandboxId: 'sb-quiet' }).map((r) => r.argv[1]), ['0', '1', '2', '3', '4'])
      const loud = log.list({ sandboxId: 'sb-loud', limit: 100_000 })
      assert.ok(loud.length <= 55, `${loud.length} rows of the loud sandbox kept`)
      assert.deepEqual(loud.at(-1)!.argv, ['echo', '4999'])
      log.close()
    })
  })

  it('keeps a row small whatever the argv: millions of empty words, or words of characters JSON escapes', async () => {
    await withDb(async (db) => {
      const log = createCommandLog(db)
      log.record({ sandboxId: 'sb-a', agentId: 'ag-a', argv: new Array<string>(2_000_000).fill(''), exitCode: 0, durationMs: 1, outputBytes: 0 })
      log.record({ sandboxId: 'sb-a', agentId: 'ag-a', argv: new Array<string>(100_000).fill('\u0001'.repeat(7)), exitCode: 0, durationMs: 1, outputBytes: 0 })
      const [empty, escaped] = log.list()
      assert.equal(empty!.argv.length, maxArgvWords + 1)
      assert.equal(empty!.argv.at(-1), '…')
      assert.ok(escaped!.argv.join('').length <= maxArgvChars + 1)
      for (const { argv } of db.prepare<[], { argv: string }>('SELECT argv FROM command_logs').all()) assert.ok(argv.length <= maxArgvJsonChars, `a row's argv takes ${argv.length} characters`)
      log.close()
    })
  })
})
