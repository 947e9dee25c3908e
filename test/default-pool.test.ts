/**
 * `sandstorm up`'s default warm pools, on the real process: it keeps `debian` and `base` ready from
 * the start, so that a plain CLI run, an SDK create and E2B's own `Sandbox.create()` are hand-overs;
 * `--pool` replaces the defaults, `--no-pool` drops them, a pool stored with `pool set` wins over
 * them, a bad value exits 2 naming the flag, and a stop leaves no sandbox, namespace or process.
 * One data dir, started again for each configuration.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { execa } from 'execa'
import { Sandbox as E2bSandbox } from 'e2b'
import { listPools, Sandbox, waitForPool, type PoolInfo } from '@sandstorm/sdk'
import { createApiKeyInDataDir } from '../src/server/index.js'
import { cliMain, runCli } from './helpers/cli-process.js'
import { startUpProcess, type UpProcess } from './helpers/fleet-processes.js'
import { leftoversOf, namesIn, sandboxIdsOnDisk } from './helpers/leftovers.js'
import { skipReason } from './helpers/stack.js'

const skip = skipReason() ?? (process.env.SANDSTORM_POOLS ? 'SANDSTORM_POOLS is set: the defaults under test would not apply' : false)

/** A pool as the test compares it: what it is configured to, not how full it is now. */
const shapeOf = (p: PoolInfo) => ({ template: p.template, min: p.min, max: p.max, default: p.default ?? false })

describe('sandstorm up: default warm pools', { skip, timeout: 600_000 }, () => {
  let dir: string
  let up: UpProcess | undefined
  /** Ids of every sandbox the agent held on disk while `up` ran: pooled ones are in no list. */
  const seen = new Set<string>()

  const start = async (args: string[]): Promise<UpProcess> => (up = await startUpProcess(dir, args, { defaultPools: true }))
  const pools = async (): Promise<PoolInfo[]> => listPools(up!.conn)
  const poolOf = async (template: string): Promise<PoolInfo> => {
    const found = (await pools()).find((p) => p.template === template)
    assert.ok(found, `no pool of ${template}`)
    return found
  }
  /** Waits until every pool listed has its min ready (a default pool is listed once its template was looked at). */
  const filled = async (templates: string[]): Promise<void> => {
    for (const template of templates) await waitForPool(template, { ...up!.conn, waitMs: 240_000 })
  }
  /**
   * SIGTERM, then what the stop must leave: no sandbox of this data dir on disk, in runc, as a
   * namespace or a process. Resolves with the log lines `up` wrote (warnings and errors).
   */
  const stop = async (): Promise<Record<string, unknown>[]> => {
    for (const id of await sandboxIdsOnDisk(dir)) seen.add(id)
    const child = up!.child
    up = undefined
    child.kill('SIGTERM')
    const ended = await child
    assert.equal(ended.exitCode, 0, String(ended.stderr).slice(-2000))
    assert.deepEqual(await sandboxIdsOnDisk(dir), [], 'a sandbox is left on disk')
    const runc = await execa('runc', ['--root', join(dir, 'runc'), 'list', '--format', 'json'], { reject: false })
    assert.deepEqual(JSON.parse(runc.stdout || 'null') ?? [], [], 'a runc container is left')
    const tag = createHash('sha256').update(dir).digest('hex').slice(0, 6)
    assert.deepEqual((await namesIn('/run/netns')).filter((n) => n.startsWith(`sbn-${tag}-`)), [], 'a network namespace is left')
    for (const id of seen) assert.deepEqual(await leftoversOf(dir, id), [], `sandbox ${id} left something`)
    const logs = String(ended.stderr).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
    assert.deepEqual(logs.filter((l) => (l.level as number) >= 50), [], 'up logged an error')
    return logs
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-default-pool-'))
  })
  after(async () => {
    if (up) {
      for (const s of await Sandbox.list(up.conn).catch(() => [])) await Sandbox.kill(s.id, up.conn).catch(() => undefined)
      up.child.kill('SIGTERM')
      await up.child
    }
    // Only a data dir with nothing mounted under it is removed: rm must not reach into a sandbox's root.
    const mounted = (await readFile('/proc/self/mountinfo', 'utf8')).includes(` ${dir}/`)
    if (dir && !mounted) await rm(dir, { recursive: true, force: true })
  })

  it('keeps pools of debian and base from the start, and hands plain creates over from them', async () => {
    await start([])
    // Listed once the templates were looked at (in the background, after the server listened).
    await filled(['debian', 'base'])
    assert.deepEqual((await pools()).map(shapeOf), [
      { template: 'base', min: 2, max: 2, default: true },
      { template: 'debian', min: 2, max: 2, default: true },
    ])

    // `sandstorm run`: the CLI's default template, its default memory, cpus, disk and network.
    const ran = await runCli(up!, 'run', '--', 'echo', 'from-the-pool')
    assert.equal(ran.code, 0, ran.stderr)
    assert.equal(ran.stdout, 'from-the-pool\n')
    assert.equal((await poolOf('debian')).hits, 1)

    // `sandstorm create --json` says where its sandbox came from.
    await filled(['debian'])
    const created = await runCli(up!, 'create', '--json')
    assert.equal(created.code, 0, created.stderr)
    const info = JSON.parse(created.stdout) as { id: string; source?: string; template: string }
    assert.equal(info.source, 'pool')
    assert.equal(info.template, 'debian')
    assert.equal((await runCli(up!, 'rm', info.id)).code, 0)

    // The SDK's plain create.
    await filled(['debian'])
    const sbx = await Sandbox.create({ ...up!.conn })
    assert.equal(sbx.start.source, 'pool')
    assert.equal((await sbx.commands.run('echo sdk')).stdout, 'sdk\n')
    await sbx.kill()
    const debian = await poolOf('debian')
    assert.equal(debian.hits, 3)
    assert.equal(debian.misses, 0)

    // E2B's own SDK, unmodified, with only its environment pointing here: template base.
    process.env.E2B_API_URL = up!.conn.apiUrl
    process.env.E2B_SANDBOX_URL = up!.conn.apiUrl
    process.env.E2B_API_KEY = createApiKeyInDataDir(dir, 'e2b')
    const e2b = await E2bSandbox.create()
    try {
      assert.equal((await e2b.commands.run('echo e2b')).stdout, 'e2b\n')
      const base = await poolOf('base')
      assert.equal(base.hits, 1, 'E2B\'s Sandbox.create() was served cold')
      assert.equal(base.misses, 0)
      assert.equal(base.inUse, 1)
    } finally {
      await e2b.kill()
    }

    // Stored through the API: it outlives the start, unlike the defaults.
    const set = await runCli(up!, 'pool', 'set', 'debian', '--min', '1', '--max', '3', '--json')
    assert.equal(set.code, 0, set.stderr)
    assert.equal((JSON.parse(set.stdout) as PoolInfo).default, undefined)
    await stop()
  })

  it('lets a pool stored with `pool set` win over the default of its template', async () => {
    await start([])
    await filled(['debian', 'base'])
    assert.deepEqual((await pools()).map(shapeOf), [
      { template: 'base', min: 2, max: 2, default: true },
      { template: 'debian', min: 1, max: 3, default: false },
    ])
    await stop()
  })

  it('keeps no default pool with --no-pool, and only the stored ones', async () => {
    await start(['--no-pool'])
    assert.deepEqual((await pools()).map(shapeOf), [{ template: 'debian', min: 1, max: 3, default: false }])
    assert.equal((await runCli(up!, 'pool', 'rm', 'debian')).code, 0)
    assert.deepEqual(await pools(), [])
    // Nothing of the defaults opens later either: a create is cold.
    const sbx = await Sandbox.create({ ...up!.conn })
    assert.equal(sbx.start.source, undefined)
    await sbx.kill()
    assert.deepEqual(await pools(), [])
    await stop()
  })

  it('keeps only what --pool names, until `pool rm`', async () => {
    await start(['--pool', 'debian=1'])
    await filled(['debian'])
    assert.deepEqual((await pools()).map(shapeOf), [{ template: 'debian', min: 1, max: 1, default: true }])
    assert.equal((await poolOf('debian')).ready, 1)
    assert.equal((await runCli(up!, 'pool', 'rm', 'debian')).code, 0)
    assert.deepEqual(await pools(), [])
    await stop()
  })

  it('skips a template that is not built, and exits 2 naming the flag for a bad value', async () => {
    const bad = await execa('node', [cliMain, 'up', '--data-dir', dir, '--port', '0', '--pool', 'debian'], { reject: false, stdin: 'ignore', timeout: 60_000 })
    assert.equal(bad.exitCode, 2)
    assert.equal(bad.stderr.split('\n')[0], 'sandstorm: --pool: expected TEMPLATE=N, a template name and a count from 1 to 256 (such as debian=2), got "debian"')
    const badEnv = await execa('node', [cliMain, 'up', '--data-dir', dir, '--port', '0'], { reject: false, stdin: 'ignore', timeout: 60_000, env: { SANDSTORM_POOLS: 'debian=0' } })
    assert.equal(badEnv.exitCode, 2)
    assert.match(badEnv.stderr, /^sandstorm: SANDSTORM_POOLS: expected TEMPLATE=N, .* got "debian=0"/)

    await start(['--pool', 'not-built-here=1', '--pool', 'debian=1'])
    await filled(['debian'])
    assert.deepEqual((await pools()).map(shapeOf), [{ template: 'debian', min: 1, max: 1, default: true }])
    const logs = await stop()
    // With SANDSTORM_TEST_LOGS the logs go to the terminal instead.
    if (!process.env.SANDSTORM_TEST_LOGS) {
      const skipped = logs.filter((l) => l.msg === 'default pool skipped: the template is not built on this host')
      assert.deepEqual(skipped.map((l) => l.template), ['not-built-here'])
    }
  })
})
