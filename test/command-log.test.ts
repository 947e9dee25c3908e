/** Central logs on one machine: `sandstorm up` records every command as the fleet does. */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { listAgents, listCommandLogs, Sandbox } from '@sandstorm/sdk'
import { skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? false

describe('central command log with the in-process agent', { skip }, () => {
  let stack: Stack
  before(async () => {
    stack = await startStack()
  })
  after(async () => {
    await stack?.close()
  })

  it('records each command with its exit code and output bytes, and lists the local agent', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn })
    await sbx.commands.run(['sh', '-c', 'printf 12345; printf 678 >&2; exit 4']).catch(() => undefined)
    await sbx.commands.run(['true'])
    // The log is written when the command's end event is handled: wait for both entries.
    let logs = await listCommandLogs({ ...stack.conn, sandboxId: sbx.sandboxId })
    for (let i = 0; logs.length < 2 && i < 200; i++) {
      await new Promise((r) => setImmediate(r))
      logs = await listCommandLogs({ ...stack.conn, sandboxId: sbx.sandboxId })
    }
    assert.equal(logs.length, 2)
    assert.deepEqual(logs[0]!.argv, ['sh', '-c', 'printf 12345; printf 678 >&2; exit 4'])
    assert.equal(logs[0]!.exitCode, 4)
    assert.equal(logs[0]!.outputBytes, 8)
    assert.deepEqual(logs[1]!.argv, ['true'])
    assert.equal(logs[1]!.exitCode, 0)
    const agents = await listAgents({ ...stack.conn })
    assert.equal(agents.length, 1)
    assert.equal(agents[0]!.state, 'live')
    assert.ok(agents[0]!.templates.includes('debian'))
    await sbx.kill()
  })
})
