/**
 * Adoption end to end: sandboxes keep running while the server and agent are down, and the next
 * start takes them back; one destroyed behind the agent's back in between is forgotten and cleaned.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import { NotFoundError, Sandbox } from '@sandstorm/sdk'
import { leftoversOf, sandboxIdsOnDisk } from './helpers/leftovers.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false
const run = promisify(execFile)


describe('adoption after a restart, end to end', { skip }, () => {
  let stack: Stack

  before(async () => {
    stack = await startStack()
  })
  after(async () => {
    await stack?.close()
  })

  it('takes running sandboxes back, and forgets one destroyed while it was down', async () => {
    const one = await Sandbox.create('debian', { ...stack.conn, labels: { n: '1' } })
    const two = await Sandbox.create('debian', { ...stack.conn, labels: { n: '2' } })
    const gone = await Sandbox.create('debian', { ...stack.conn, labels: { n: '3' } })
    // Expires while the stack is down, or soon after it is back.
    const expiring = await Sandbox.create('debian', { ...stack.conn, labels: { n: '4' }, timeoutMs: 2000 })
    await one.files.write('/root/kept.txt', 'still here')
    await two.commands.run('sleep 600 >/dev/null 2>&1 &')
    const expiresAt = (await one.getInfo()).expiresAt

    await stack.stop()
    // Destroyed behind the agent's back: runc forgets it, its mount and directory stay.
    await run('runc', ['--root', join(stack.dataDir, 'runc'), 'delete', '--force', gone.sandboxId])
    stack = await stack.restart()
    const conn = stack.conn

    await until('the sandbox that expired is gone', async () => !(await Sandbox.list(conn)).some((s) => s.id === expiring.sandboxId))
    assert.deepEqual(await leftoversOf(stack.dataDir, expiring.sandboxId), [])
    const list = await Sandbox.list(conn)
    const states = Object.fromEntries(list.map((s) => [s.id, s.state]))
    assert.deepEqual(states, { [one.sandboxId]: 'running', [two.sandboxId]: 'running' })
    assert.equal((await Sandbox.getInfo(one.sandboxId, conn)).expiresAt, expiresAt)
    assert.deepEqual((await Sandbox.getInfo(one.sandboxId, conn)).labels, { n: '1' })
    await assert.rejects(Sandbox.getInfo(gone.sandboxId, conn), NotFoundError)
    assert.deepEqual(await leftoversOf(stack.dataDir, gone.sandboxId), [])

    const again = await Sandbox.connect(one.sandboxId, conn)
    assert.equal(await again.files.read('/root/kept.txt'), 'still here')
    assert.equal((await again.commands.run('cat /root/kept.txt')).stdout, 'still here')
    assert.equal((await again.commands.run('id -u', { user: 'user' })).stdout, '1000\n')
    const other = await Sandbox.connect(two.sandboxId, conn)
    const ps = await other.commands.run('for d in /proc/[0-9]*; do tr "\\0" " " < $d/cmdline 2>/dev/null; echo; done')
    assert.match(ps.stdout, /sleep 600/, 'the background process kept running across the restart')

    assert.equal(await again.kill(), true)
    assert.equal(await other.kill(), true)
    assert.deepEqual(await Sandbox.list(conn), [])
    for (const id of [one.sandboxId, two.sandboxId]) assert.deepEqual(await leftoversOf(stack.dataDir, id), [])
    assert.deepEqual(await sandboxIdsOnDisk(stack.dataDir), [])
  })
})
