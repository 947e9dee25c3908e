/**
 * Warm pools end to end: a real server, agent and runc. Pooled sandboxes are handed over fresh,
 * hidden from the sandbox list, refilled to min, counted as hits and misses, and gone with the pool.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { execa } from 'execa'
import { deletePool, listPools, Sandbox, setPool, waitForPool } from '@sandstorm/sdk'
import { skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? false
const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url))

describe('warm pools', { skip }, () => {
  let stack: Stack
  /** POST /v1/sandboxes by hand, to read the `source` the SDK does not expose. */
  const create = async (body: object): Promise<{ id: string; source: string; labels: Record<string, string> }> => {
    const res = await fetch(`${stack.server.url}/v1/sandboxes`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.server.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    assert.equal(res.status, 201, await res.clone().text())
    return (await res.json()) as { id: string; source: string; labels: Record<string, string> }
  }
  const pool = async (template: string) => (await listPools(stack.conn)).find((p) => p.template === template)

  before(async () => {
    stack = await startStack()
  })
  after(async () => {
    await stack?.close()
  })

  it('hands over fresh sandboxes that never carry an earlier one\'s files, and refills to min', async () => {
    await setPool('debian', { ...stack.conn, min: 2, max: 4 })
    await waitForPool('debian', { ...stack.conn, ready: 2 })
    // Pooled sandboxes are not the user's: the list shows none of them.
    assert.deepEqual(await Sandbox.list(stack.conn), [])

    const first = await create({ template: 'debian', labels: { who: 'first' }, timeoutMs: 120_000 })
    assert.equal(first.source, 'pool')
    assert.deepEqual(first.labels, { who: 'first' })
    const sb1 = await Sandbox.connect(first.id, stack.conn)
    assert.equal((await sb1.commands.run('echo secret > /root/left-behind && echo ok', stack.conn)).stdout, 'ok\n')
    await sb1.kill(stack.conn)

    const seen = new Set([first.id])
    for (let i = 0; i < 3; i++) {
      const next = await create({ template: 'debian' })
      assert.equal(next.source, 'pool')
      assert.ok(!seen.has(next.id), 'a pooled sandbox was handed out twice')
      seen.add(next.id)
      const sb = await Sandbox.connect(next.id, stack.conn)
      const r = await sb.commands.run('test -e /root/left-behind && echo found || echo clean', stack.conn)
      assert.equal(r.stdout, 'clean\n')
      assert.equal((await sb.getInfo(stack.conn)).state, 'running')
      await sb.kill(stack.conn)
      await waitForPool('debian', { ...stack.conn, ready: 2 })
    }
    const info = await pool('debian')
    assert.equal(info?.ready, 2)
    assert.equal(info?.hits, 4)
    assert.deepEqual((await Sandbox.list(stack.conn)).map((s) => s.id), [])
  })

  it('serves a create with other config cold, and counts an empty pool as a miss', async () => {
    const withEnv = await create({ template: 'debian', env: { A: '1' } })
    assert.equal(withEnv.source, 'cold')
    const otherMemory = await create({ template: 'debian', memoryMiB: 300 })
    assert.equal(otherMemory.source, 'cold')
    const before = await pool('debian')
    assert.equal(before?.misses, 0, 'a create the pool cannot serve is not its miss')

    // min 0: nothing is kept ready, so the next matching create misses and the pool grows by one.
    await setPool('debian', { ...stack.conn, min: 0, max: 1 })
    const drained = await pool('debian')
    assert.ok(drained && drained.ready <= 1)
    // Take whatever is still ready, so that the next create finds the pool empty.
    for (let i = 0; i < (drained?.ready ?? 0); i++) assert.equal((await create({ template: 'debian' })).source, 'pool')
    const missed = await create({ template: 'debian' })
    assert.equal(missed.source, 'cold')
    assert.equal((await pool('debian'))?.misses, 1)
    await waitForPool('debian', { ...stack.conn, ready: 1 })
    assert.equal((await create({ template: 'debian' })).source, 'pool')

    const metrics = await (await fetch(`${stack.server.url}/metrics`, { headers: { authorization: `Bearer ${stack.server.apiKey}` } })).text()
    assert.match(metrics, /sandstorm_pool_hits_total\{template="debian"\} \d+/)
    assert.match(metrics, /sandstorm_pool_misses_total\{template="debian"\} 1/)
    assert.match(metrics, /sandstorm_pool_ready\{template="debian"\} \d/)
    assert.match(metrics, /sandstorm_pool_in_use\{template="debian"\} \d/)
    assert.match(metrics, /sandstorm_pool_refill_seconds_count\{template="debian"\} \d+/)
    for (const s of await Sandbox.list(stack.conn)) await (await Sandbox.connect(s.id, stack.conn)).kill(stack.conn)
  })

  it('destroys the ready sandboxes of a deleted pool, and keeps a pool across a restart', async () => {
    await setPool('debian', { ...stack.conn, min: 1, max: 2 })
    await waitForPool('debian', { ...stack.conn, ready: 1 })
    await stack.stop()
    stack = await stack.restart()
    // The last run's pooled sandbox was destroyed as an orphan; the pool is refilled afresh.
    await waitForPool('debian', { ...stack.conn, ready: 1 })
    const onHost = (await stack.agent.list()).map((s) => s.id)
    assert.equal(onHost.length, 1)
    await deletePool('debian', stack.conn)
    assert.deepEqual(await stack.agent.list(), [])
    assert.deepEqual(await listPools(stack.conn), [])
  })

  it('is set, listed and removed by the CLI', async () => {
    const cli = (...args: string[]) => execa('node', [main, '--url', stack.conn.apiUrl, '--api-key', stack.conn.apiKey, ...args], { reject: false })
    const set = await cli('pool', 'set', 'debian', '--min', '1', '--max', '3')
    assert.equal(set.exitCode, 0, set.stderr)
    assert.match(set.stdout, /^TEMPLATE\s+MIN\s+MAX\s+READY/)
    const table = await cli('pool')
    assert.match(table.stdout, /\ndebian\s+1\s+3\s/)
    const json = JSON.parse((await cli('pool', '--json')).stdout) as { template: string; max: number }[]
    assert.deepEqual(json.map((p) => [p.template, p.max]), [['debian', 3]])
    const bad = await cli('pool', 'set', 'debian', '--min', '5', '--max', '2')
    assert.notEqual(bad.exitCode, 0)
    assert.match(bad.stderr, /min ≤ max/)
    assert.equal((await cli('pool', 'rm', 'debian')).exitCode, 0)
    assert.equal((await cli('pool', '--json')).stdout.trim(), '[]')
    assert.notEqual((await cli('pool', 'rm', 'debian')).exitCode, 0)
  })
})
