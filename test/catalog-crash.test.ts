/**
 * A crash mid-write: `sandstorm up` is SIGKILLed during a burst of creates. The catalog (SQLite)
 * reopens consistent (`PRAGMA integrity_check`, schema version kept), and the next start brings it
 * in line with the host: every sandbox it lists runs and answers, every runc container and every
 * writable layer, disk image and loop device on the host belongs to a sandbox it lists, and the
 * creates cut off half-way are adopted or removed with nothing left of them.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdirSync, readdirSync, watch, type FSWatcher } from 'node:fs'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { after, before, describe, it, type TestContext } from 'node:test'
import Database from 'better-sqlite3'
import { Sandbox } from '@sandstorm/sdk'
import { leftoversOf, loopDevicesUnder, mountsUnder, namesIn, onSpareDisk, sandboxIdsOnDisk } from './helpers/leftovers.js'
import { startUpProcess, type UpProcess } from './helpers/fleet-processes.js'
import { skipReason } from './helpers/stack.js'

const skip = skipReason() ?? false
const run = promisify(execFile)

/** Creates in a burst, and how many run at once. */
const burst = { creates: 24, concurrency: 8 }

/** When a round's SIGKILL comes: on the nth answer, or on the nth new file in a dir (a step of a create). */
type KillPoint = { answers: number } | { files: number; under: string; suffix: string }

/**
 * One round per kill point: after answers (creates in flight at every step), and at the steps where
 * a create is half-made on the host: a writable layer's disk image being made, and the agent's
 * record written with the writable layer mounted and no container yet.
 */
const killPoints: KillPoint[] = [
  { answers: 3 },
  { files: 4, under: 'storage/writable', suffix: '.disk' },
  { files: 3, under: 'agent/sandboxes', suffix: '.json' },
  { answers: 1 },
]

const describeKill = (k: KillPoint): string => ('answers' in k ? `answer ${k.answers}` : `new ${k.under}/*${k.suffix} ${k.files}`)

/** Runs `use` on the catalog database file, opened directly (beside a running server: WAL lets it read). */
function openDb<T>(dir: string, use: (db: Database.Database) => T): T {
  const db = new Database(join(dir, 'sandstorm.db'))
  try {
    return use(db)
  } finally {
    db.close()
  }
}

/** The catalog's rows, read from the database file directly. */
function catalogRows(dir: string): { id: string; state: string }[] {
  return openDb(dir, (db) => db.prepare('SELECT id, state FROM sandboxes ORDER BY id').all() as { id: string; state: string }[])
}

/** Ids of the runc containers under the data dir's runc root. */
async function runcContainers(dir: string): Promise<string[]> {
  const { stdout } = await run('runc', ['--root', join(dir, 'runc'), 'list', '--format', 'json'])
  return ((JSON.parse(stdout || 'null') as { id: string }[] | null) ?? []).map((c) => c.id).sort()
}

/** Sandbox ids of the writable layers in the layer store (dirs, records and disk images). */
async function writableIds(dir: string): Promise<string[]> {
  const names = await namesIn(join(dir, 'storage', 'writable'))
  return [...new Set(names.map((n) => n.replace(/\.(json|disk)$/, '')))].sort()
}

/** Calls `onNth` once the `nth` file ending in `suffix` appears in `dir` (made if missing) from now on. */
function watchNewFiles(dir: string, suffix: string, nth: number, onNth: () => void): FSWatcher {
  mkdirSync(dir, { recursive: true })
  const before = new Set(readdirSync(dir))
  const fresh = new Set<string>()
  return watch(dir, (_event, name) => {
    if (!name?.endsWith(suffix) || before.has(name)) return
    fresh.add(name)
    if (fresh.size === nth) onNth()
  })
}

/** Creates `burst.creates` sandboxes, `burst.concurrency` at a time, calling `onAnswer` with each that answered; creates that fail (the server died) are expected. */
async function createBurst(conn: UpProcess['conn'], onAnswer: (id: string) => void): Promise<void> {
  let tried = 0
  const worker = async (): Promise<void> => {
    while (tried < burst.creates) {
      tried++
      const sbx = await Sandbox.create('debian', { ...conn, network: 'none', timeoutMs: 30 * 60_000 }).catch(() => undefined)
      if (sbx) onAnswer(sbx.sandboxId)
    }
  }
  await Promise.all(Array.from({ length: burst.concurrency }, worker))
}

describe('the catalog after a crash mid-write', { skip, timeout: 900_000 }, () => {
  let dir: string
  let up: UpProcess | undefined

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-crash-'))
  })
  after(async () => {
    if (!dir) return
    // Whatever happened: a live (or fresh) up reconciles and destroys every sandbox; the rest goes by hand.
    if (!up || up.child.exitCode !== null || up.child.signalCode !== null) up = await startUpProcess(dir).catch(() => undefined)
    if (up) {
      for (const s of await Sandbox.list(up.conn).catch(() => [])) await Sandbox.kill(s.id, up.conn).catch(() => undefined)
      up.child.kill('SIGTERM')
      await up.child
    }
    for (const id of await runcContainers(dir).catch(() => [])) await run('runc', ['--root', join(dir, 'runc'), 'delete', '--force', id]).catch(() => undefined)
    for (const m of (await mountsUnder(dir).catch(() => [])).reverse()) await run('umount', ['-l', m]).catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
  })

  /** Ids seen anywhere (catalog, host) over every round, each checked for leftovers once it is gone. */
  const seen = new Set<string>()

  /** Kills the running `up` at `killPoint` during a burst of creates; checks the database the crash left; starts `up` again. */
  async function crashAndRestart(t: TestContext, killPoint: KillPoint): Promise<{ answered: string[] }> {
    const schemaVersion = openDb(dir, (db) => db.pragma('user_version', { simple: true }) as number)
    assert.ok(schemaVersion > 0, 'the catalog has a schema before the burst')

    // The kill lands while creates are in flight, at the kill point; the others are mid-way.
    const answered: string[] = []
    const child = up!.child
    let killedAt: number | undefined
    const kill = (): void => {
      if (killedAt !== undefined) return
      killedAt = answered.length
      child.kill('SIGKILL')
    }
    const watcher = 'files' in killPoint ? watchNewFiles(join(dir, killPoint.under), killPoint.suffix, killPoint.files, kill) : undefined
    const outcomes = createBurst(up!.conn, (id) => {
      answered.push(id)
      if ('answers' in killPoint && answered.length === killPoint.answers) kill()
    })
    void outcomes.then(() => {
      if (killedAt === undefined) child.kill('SIGKILL')
    })
    const ended = await child
    watcher?.close()
    assert.equal(ended.signal, 'SIGKILL', `up ended on its own before the kill: ${ended.stderr}`)
    await outcomes
    assert.ok(killedAt !== undefined, `the burst ended before the kill point (${describeKill(killPoint)})`)
    const answeredBeforeKill = answered.slice(0, killedAt)

    // The database, as the crash left it, opened read-write as the next start will.
    openDb(dir, (db) => {
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok')
      assert.equal(db.pragma('user_version', { simple: true }), schemaVersion)
    })
    const rowsAtCrash = catalogRows(dir)
    for (const id of answeredBeforeKill) assert.ok(rowsAtCrash.some((r) => r.id === id), `sandbox ${id} was answered but is not in the catalog`)
    for (const id of [...rowsAtCrash.map((r) => r.id), ...(await sandboxIdsOnDisk(dir)), ...(await writableIds(dir)), ...(await runcContainers(dir))]) seen.add(id)
    t.diagnostic(`killed at ${describeKill(killPoint)}, after ${killedAt} answers: ${rowsAtCrash.length} catalog rows (${rowsAtCrash.filter((r) => r.state === 'starting').length} starting), ${(await sandboxIdsOnDisk(dir)).length} sandboxes on disk, ${(await writableIds(dir)).length} writable layers, ${(await loopDevicesUnder(dir)).length} loop devices`)

    up = await startUpProcess(dir)
    return { answered: answeredBeforeKill }
  }

  /** The catalog agrees with the host: what it lists runs and answers, and nothing else of any sandbox is left. */
  async function assertReconciled(t: TestContext, mustHave: string[]): Promise<string[]> {
    const listed = (await Sandbox.list(up!.conn)).map((s) => s.id).sort()
    const rows = catalogRows(dir)
    assert.deepEqual(rows.map((r) => r.id), listed, 'the API lists what the catalog holds')
    for (const id of mustHave) assert.ok(listed.includes(id), `sandbox ${id}, answered before the crash, was not adopted`)
    for (const row of rows) {
      assert.equal(row.state, 'running', `sandbox ${row.id} is ${row.state} after adoption`)
      const sbx = await Sandbox.connect(row.id, up!.conn)
      assert.equal((await sbx.commands.run('echo alive', { timeoutMs: 60_000 })).stdout, 'alive\n', `sandbox ${row.id} does not answer`)
    }
    assert.deepEqual(await runcContainers(dir), listed, 'every runc container on the host is in the catalog')
    assert.deepEqual(await sandboxIdsOnDisk(dir), listed, 'every sandbox dir and agent record is in the catalog')
    assert.deepEqual(await writableIds(dir), listed, `every writable layer (dir, record, disk image) is in the catalog; found ${(await namesIn(join(dir, 'storage', 'writable'))).join(' ')}`)
    // Spare disks (not counted as loop devices here) wait mounted for the next creates: at most 2, the agent's default.
    const spares = (await mountsUnder(dir)).filter(onSpareDisk)
    assert.ok(spares.length <= 2, `at most 2 spare disks: ${spares.join(', ')}`)
    const loops = await loopDevicesUnder(dir)
    for (const loop of loops) assert.ok(listed.some((id) => loop.endsWith(`/${id}.disk`)), `${loop} belongs to no sandbox in the catalog`)
    assert.equal(loops.length, listed.length, `one disk image per sandbox: ${loops.join(', ')}`)
    for (const id of seen) {
      if (listed.includes(id)) continue
      assert.deepEqual(await leftoversOf(dir, id), [], `sandbox ${id}, cut off mid-create, left things behind`)
    }
    t.diagnostic(`after the restart: ${listed.length} in the catalog, ${[...seen].filter((id) => !listed.includes(id)).length} removed so far`)
    return listed
  }

  it('SIGKILL during bursts of creates: the database reopens whole and each next start reconciles it with the host', async (t) => {
    up = await startUpProcess(dir)
    let listed: string[] = []
    for (const killPoint of killPoints) {
      const { answered } = await crashAndRestart(t, killPoint)
      listed = await assertReconciled(t, [...listed, ...answered])
    }

    // Every sandbox destroyed: nothing left.
    for (const id of listed) await Sandbox.kill(id, up!.conn)
    assert.deepEqual(await Sandbox.list(up!.conn), [])
    for (const id of seen) assert.deepEqual(await leftoversOf(dir, id), [], `sandbox ${id} left things behind after its destroy`)
    assert.deepEqual(await runcContainers(dir), [])
    // What is still mounted while up runs is its spare disks; a stop removes them too.
    assert.deepEqual((await mountsUnder(dir)).filter((m) => !onSpareDisk(m)), [])
    up!.child.kill('SIGTERM')
    await up!.child
    up = undefined
    assert.deepEqual(await loopDevicesUnder(dir), [])
    assert.deepEqual(await mountsUnder(dir), [])
    assert.deepEqual(await writableIds(dir), [])
    assert.deepEqual(await readdir(join(dir, 'sandboxes')), [])
  })
})
