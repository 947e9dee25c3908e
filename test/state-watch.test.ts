/**
 * A sandbox that dies on its own (its init killed from the host here; the kernel's OOM killer in
 * life) is listed as stopped, says so to a command, and is still removed whole by a kill.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Sandbox } from '@sandstorm/sdk'
import { leftoversOf } from './helpers/leftovers.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false

describe('a sandbox that dies on its own', { skip }, () => {
  let stack: Stack
  before(async () => {
    stack = await startStack({ stateWatchMs: 100 })
  })
  after(async () => {
    await stack?.close()
  })

  it('is listed as stopped, refuses commands clearly, and a kill still leaves nothing', async () => {
    const dead = await Sandbox.create('debian', { ...stack.conn })
    const alive = await Sandbox.create('debian', { ...stack.conn })
    const state = JSON.parse(readFileSync(join(stack.dataDir, 'runc', dead.sandboxId, 'state.json'), 'utf8')) as { init_process_pid: number }
    assert.ok(state.init_process_pid > 1)
    process.kill(state.init_process_pid, 'SIGKILL')

    await until('the dead sandbox to be listed as stopped', async () => (await dead.getInfo()).state === 'stopped')
    await assert.rejects(dead.commands.run('true'), /not running/)
    const listed = await Sandbox.list({ ...stack.conn })
    assert.equal(listed.find((s) => s.id === dead.sandboxId)?.state, 'stopped')
    // E2B's list knows running and paused sandboxes only.
    const e2bList = (await (await fetch(`${stack.conn.apiUrl}/sandboxes`, { headers: { 'X-API-KEY': stack.conn.apiKey } })).json()) as { sandboxID: string }[]
    assert.deepEqual(e2bList.map((s) => s.sandboxID), [alive.sandboxId])
    // The other sandbox is not disturbed.
    assert.equal((await alive.getInfo()).state, 'running')
    assert.equal((await alive.commands.run('echo fine')).stdout, 'fine\n')

    await dead.kill()
    assert.deepEqual(await leftoversOf(stack.dataDir, dead.sandboxId), [])
    await alive.kill()
  })
})
