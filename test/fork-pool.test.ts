/**
 * Forks and creates from a snapshot served by a warm pool, end to end on a real server, agent and
 * runc: a ready sandbox of the snapshot's template is restored to the snapshot and handed over,
 * with the snapshot's files and env and nothing of what the pooled sandbox held; the rest of a
 * fork starts cold, a snapshot of another config starts cold, and a restore that fails leaves no
 * sandbox behind.
 */
import assert from 'node:assert/strict'
import { rename } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Sandbox as E2bSandbox } from 'e2b'
import { deleteSnapshot, listPools, Sandbox, setPool, waitForPool, type PoolInfo, type SandboxInfo } from '@sandstorm/sdk'
import { useStackForE2b } from './helpers/e2b-env.js'
import { leftoversOf } from './helpers/leftovers.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false
const poolSize = 4

describe('fork from a warm pool', { skip, timeout: 600_000 }, () => {
  let stack: Stack
  const sh = async (sb: Sandbox, cmd: string): Promise<string> => {
    const result = await sb.commands.run(cmd, { ...stack.conn })
    assert.equal(result.exitCode, 0, `${cmd}: ${result.stderr}`)
    return result.stdout
  }
  const pool = async (): Promise<PoolInfo> => {
    const found = (await listPools(stack.conn)).find((p) => p.template === 'debian')
    assert.ok(found, 'no pool of debian')
    return found
  }
  /** Ids of the sandboxes the agent runs that the catalog does not list: the pool's. */
  const pooledIds = async (): Promise<Set<string>> => {
    const listed = new Set((await Sandbox.list(stack.conn)).map((s) => s.id))
    return new Set((await stack.agent.list()).map((s) => s.id).filter((id) => !listed.has(id)))
  }
  /** POST /v1/snapshots/:id/fork by hand, to read the `source` of each sandbox, which the SDK does not expose. */
  const forkResponse = (snapshotId: string, count: number): Promise<Response> =>
    fetch(`${stack.server.url}/v1/snapshots/${snapshotId}/fork`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.server.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ count, timeoutMs: 300_000, labels: { fork: 'yes' } }),
    })
  const fork = async (snapshotId: string, count: number): Promise<(SandboxInfo & { source?: string })[]> => {
    const res = await forkResponse(snapshotId, count)
    assert.equal(res.status, 201, await res.clone().text())
    return (await res.json()) as (SandboxInfo & { source?: string })[]
  }
  /**
   * Leaves a mark in every ready pooled sandbox, a file in /tmp and /root and a process, so that a
   * sandbox handed over from the pool can be seen to carry none of it.
   */
  const markPooled = async (): Promise<void> => {
    for (const id of await pooledIds()) {
      const { pid } = await stack.agent.exec(id, { argv: ['sh', '-c', 'echo pooled > /tmp/pool-marker && echo pooled > /root/pool-marker'], env: {} })
      assert.equal((await stack.agent.wait(id, pid)).exitCode, 0)
      await stack.agent.exec(id, { argv: ['sleep', '1000'], env: {} })
    }
  }
  /** Every process of the sandbox, as `pid comm` lines, seen from a command run in it. */
  const processesOf = async (sb: Sandbox): Promise<string[]> =>
    (await sh(sb, 'for p in /proc/[0-9]*; do c=$(cat $p/comm 2>/dev/null) && echo "${p#/proc/} $c"; done')).split('\n').filter(Boolean)
  /** GET /v1/sandboxes/:id, as the API answers it. */
  const get = async (id: string): Promise<Record<string, unknown>> => {
    const res = await fetch(`${stack.server.url}/v1/sandboxes/${id}`, { headers: { authorization: `Bearer ${stack.server.apiKey}` } })
    assert.equal(res.status, 200, await res.clone().text())
    return (await res.json()) as Record<string, unknown>
  }
  /** What the API shows of a sandbox, less what differs between any two sandboxes made alike. */
  const shapeOf = ({ id: _id, createdAt: _c, expiresAt: _e, source: _s, ...shape }: Record<string, unknown>) => shape
  /** Sandboxes in the catalog but the parent: those a test made. */
  const made = async (): Promise<string[]> => (await Sandbox.list(stack.conn)).map((s) => s.id).filter((id) => id !== parent.sandboxId)
  const killAll = async (): Promise<void> => {
    for (const id of await made()) await (await Sandbox.connect(id, stack.conn)).kill(stack.conn)
  }

  let parent: Sandbox
  let snapshotId: string
  /** `ls -A /tmp` of the parent when its snapshot was taken. */
  let tmpAtSnapshot: string

  before(async () => {
    stack = await startStack()
    useStackForE2b(stack)
    await setPool('debian', { ...stack.conn, min: poolSize, max: poolSize })
    // With env, the parent is no pool's: it starts cold.
    parent = await Sandbox.create('debian', { ...stack.conn, env: { FROM_PARENT: 'yes' } })
    await sh(parent, 'mkdir -p /work && echo base > /work/a.txt && echo parent > /tmp/from-parent')
    tmpAtSnapshot = await sh(parent, 'ls -A /tmp')
    snapshotId = (await parent.snapshot(stack.conn)).id
    await sh(parent, 'echo after-snapshot > /work/a.txt')
  })
  after(async () => {
    await stack?.close()
  })

  it('restores pooled sandboxes for a fork of 3: the snapshot\'s files and env, nothing of the pool\'s, and the pool refills', async () => {
    await waitForPool('debian', { ...stack.conn, ready: poolSize })
    await markPooled()
    const pooled = await pooledIds()
    assert.equal(pooled.size, poolSize)
    const hits = (await pool()).hits

    const forks = await fork(snapshotId, 3)
    assert.deepEqual(forks.map((f) => f.source), ['pool', 'pool', 'pool'])
    for (const f of forks) assert.ok(pooled.has(f.id), `fork ${f.id} is not one of the pooled sandboxes`)
    assert.equal((await pool()).hits, hits + 3)

    for (const info of forks) {
      assert.equal(info.template, 'debian')
      assert.deepEqual(info.labels, { fork: 'yes' })
      // The answer is what GET answers (which adds the ingress domain).
      const got = await get(info.id)
      assert.deepEqual(Object.fromEntries(Object.keys(info).map((k) => [k, got[k]])), { ...info, source: undefined })
      const f = await Sandbox.connect(info.id, stack.conn)
      assert.equal(await sh(f, 'cat /work/a.txt /tmp/from-parent'), 'base\nparent\n')
      assert.equal(await sh(f, 'echo $FROM_PARENT'), 'yes\n')
      // Nothing the pooled sandbox held: no file the snapshot lacks, no process but init and this command's.
      assert.equal(await sh(f, 'ls -A /tmp'), tmpAtSnapshot)
      assert.equal(await sh(f, 'test -e /root/pool-marker && echo found || echo clean'), 'clean\n')
      const processes = await processesOf(f)
      assert.ok(processes.includes('1 init'), processes.join('; '))
      // Init, the helper it runs a command under, and the command (its shell and the cat of each comm).
      for (const p of processes) assert.match(p, /^\d+ (init|sh|cat)$/, processes.join('; '))
    }
    // The catalog holds the snapshot's env: a restore of the fork starts it with that env again.
    const first = await Sandbox.connect(forks[0]!.id, stack.conn)
    await sh(first, 'echo changed > /work/a.txt')
    await first.restore(snapshotId, stack.conn)
    assert.equal(await sh(first, 'cat /work/a.txt; echo $FROM_PARENT'), 'base\nyes\n')

    await waitForPool('debian', { ...stack.conn, ready: poolSize })
    const refilled = await pooledIds()
    assert.equal(refilled.size, poolSize)
    for (const f of forks) assert.ok(!refilled.has(f.id), 'a handed-over sandbox is still counted as pooled')
    await killAll()
  })

  it('takes the 4 ready for a fork of 6 and starts 2 cold, alike to the API', async () => {
    await waitForPool('debian', { ...stack.conn, ready: poolSize })
    const pooled = await pooledIds()
    const before = await pool()
    const forks = await fork(snapshotId, 6)
    const fromPool = forks.filter((f) => f.source === 'pool')
    const cold = forks.filter((f) => f.source === 'cold')
    assert.equal(fromPool.length, 4)
    assert.equal(cold.length, 2)
    for (const f of fromPool) assert.ok(pooled.has(f.id))
    for (const f of cold) assert.ok(!pooled.has(f.id))
    const after = await pool()
    assert.equal(after.hits, before.hits + 4)
    assert.equal(after.misses, before.misses + 2)
    // A restored pooled sandbox looks to the API exactly as one made cold from the snapshot.
    const coldShape = shapeOf(await get(cold[0]!.id))
    for (const f of forks) assert.deepEqual(shapeOf(await get(f.id)), coldShape)
    // And runs the same processes: init and the command, nothing started before the restore.
    const commsOf = async (id: string) => (await processesOf(await Sandbox.connect(id, stack.conn))).map((p) => p.split(' ')[1]).sort()
    const coldComms = await commsOf(cold[0]!.id)
    for (const f of forks) {
      const sb = await Sandbox.connect(f.id, stack.conn)
      assert.equal(await sh(sb, 'cat /work/a.txt; echo $FROM_PARENT'), 'base\nyes\n')
      assert.deepEqual(await commsOf(f.id), coldComms)
    }
    await killAll()
  })

  it('starts a fork cold when the snapshot\'s config is not the pool\'s', async () => {
    const small = await Sandbox.create('debian', { ...stack.conn, memoryMiB: 300 })
    await sh(small, 'echo small > /small')
    const snap = await small.snapshot(stack.conn)
    await waitForPool('debian', { ...stack.conn, ready: poolSize })
    const pooled = await pooledIds()
    const before = await pool()
    const [f] = await fork(snap.id, 1)
    assert.equal(f!.source, 'cold')
    assert.equal(f!.memoryMiB, 300)
    assert.ok(!pooled.has(f!.id))
    const after = await pool()
    assert.deepEqual([after.hits, after.misses], [before.hits, before.misses], 'a create the pool cannot serve is neither a hit nor a miss')
    assert.equal(await sh(await Sandbox.connect(f!.id, stack.conn), 'cat /small'), 'small\n')
    await killAll()
    await deleteSnapshot(snap.id, stack.conn)
  })

  it('serves E2B\'s create of a snapshot id from the pool too, with the snapshot\'s env and the create\'s', async () => {
    await waitForPool('debian', { ...stack.conn, ready: poolSize })
    const pooled = await pooledIds()
    const hits = (await pool()).hits
    const sbx = await E2bSandbox.create(snapshotId, { envs: { GIVEN: 'yes' } })
    assert.equal((await pool()).hits, hits + 1)
    const ids = await made()
    assert.equal(ids.length, 1)
    assert.ok(pooled.has(ids[0]!), 'the E2B create did not take a pooled sandbox')
    assert.equal((await sbx.commands.run('cat /work/a.txt; echo $FROM_PARENT $GIVEN')).stdout, 'base\nyes yes\n')
    await sbx.kill()
    await killAll()
  })

  it('destroys a pooled sandbox whose restore failed, and a fork that then fails leaves no sandbox', async () => {
    const doomed = await Sandbox.create('debian', { ...stack.conn, env: { FROM_PARENT: 'no' } })
    await sh(doomed, 'echo doomed > /doomed')
    const snap = await doomed.snapshot(stack.conn)
    await doomed.kill(stack.conn)
    await waitForPool('debian', { ...stack.conn, ready: poolSize })
    const pooled = await pooledIds()
    const before = await pool()
    // The snapshot's tree is gone from under its layer: neither a restore nor a cold start can mount it.
    const tree = join(stack.dataDir, 'storage', 'layers', snap.id, 'tree')
    await rename(tree, `${tree}.away`)
    try {
      // The store is broken under the server, not the request: an internal error, its cause logged.
      const failed = await forkResponse(snap.id, 1)
      const text = await failed.text()
      assert.equal(failed.status, 500, text)
      assert.equal((JSON.parse(text) as { code: string }).code, 'internal')
    } finally {
      await rename(`${tree}.away`, tree)
    }
    assert.deepEqual(await made(), [])
    const after = await pool()
    assert.equal(after.hits, before.hits)
    assert.equal(after.misses, before.misses + 1)
    const onHost = new Set((await stack.agent.list()).map((s) => s.id))
    const gone = [...pooled].filter((id) => !onHost.has(id))
    assert.equal(gone.length, 1, 'the pooled sandbox taken for the fork is not gone')
    assert.deepEqual(await leftoversOf(stack.dataDir, gone[0]!), [])
    // The pool makes up for it.
    await until('the pool refilled', async () => (await pool()).ready === poolSize, 120_000)
    await deleteSnapshot(snap.id, stack.conn)
    await parent.kill(stack.conn)
    await deleteSnapshot(snapshotId, stack.conn)
  })
})
