/**
 * The unmodified `e2b` SDK against a real Sandstorm: a sandbox that dies under a running command
 * (killed, timed out, paused) ends the stream of a command (or a watch) as E2B's does, by dropping the connection,
 * so the SDK raises its TimeoutError ("the sandbox was killed or reached its end of life"), not
 * CommandExitError; and nothing of the sandbox is left running.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { CommandExitError, Sandbox, TimeoutError } from 'e2b'
import { e2bSuite } from './helpers/e2b-env.js'
import { waitForText } from './helpers/text-waiter.js'
import { skipReason } from './helpers/stack.js'

const skip = skipReason()

/** What E2B's SDK raises when the sandbox dies during a request. */
function assertSandboxDied(err: unknown): void {
  assert.ok(!(err instanceof CommandExitError), `expected no CommandExitError, got ${String(err)}`)
  assert.ok(err instanceof TimeoutError, `expected TimeoutError, got ${String(err)}`)
  assert.match(err.message, /sandbox was killed or reached its end of life/)
}

describe('e2b SDK: a sandbox killed under a running command', { skip: skip ?? false }, () => {
  const suite = e2bSuite()

  /** The sandbox is gone from the agent, its runtime included. */
  const assertGone = async (sbx: Sandbox): Promise<void> => {
    assert.equal(await sbx.isRunning(), false)
    assert.ok(!(await suite.stack.agent.list()).some((s) => s.id === sbx.sandboxId), `sandbox ${sbx.sandboxId} is left on the agent`)
  }

  test('a foreground run, when the sandbox is killed', async () => {
    const sbx = await Sandbox.create()
    const seen = waitForText()
    const run = sbx.commands.run('echo ready; exec sleep 600', { onStdout: (d) => seen.push(d) }).catch((e: unknown) => e)
    await seen.until('ready')
    await sbx.kill()
    assertSandboxDied(await run)
    await assertGone(sbx)
  })

  test("a background command's wait(), and a second follower by connect", async () => {
    const sbx = await Sandbox.create()
    const seen = waitForText()
    const handle = await sbx.commands.run('echo ready; exec sleep 600', { background: true, onStdout: (d) => seen.push(d) })
    await seen.until('ready')
    const attached = await sbx.commands.connect(handle.pid)
    await sbx.kill()
    assertSandboxDied(await handle.wait().catch((e: unknown) => e))
    assertSandboxDied(await attached.wait().catch((e: unknown) => e))
    await assertGone(sbx)
  })

  test('a PTY', async () => {
    const sbx = await Sandbox.create()
    const screen = waitForText()
    const decoder = new TextDecoder()
    const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => screen.push(decoder.decode(d, { stream: true })) })
    await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('echo "up-$((40+2))"\n'))
    await screen.until('up-42')
    await sbx.kill()
    assertSandboxDied(await pty.wait().catch((e: unknown) => e))
    await assertGone(sbx)
  })

  test('a directory watch: its onExit hears the same error', async () => {
    const sbx = await Sandbox.create()
    let exited!: (err: unknown) => void
    const exit = new Promise<unknown>((resolve) => (exited = resolve))
    const created = waitForText()
    await sbx.files.watchDir('/tmp', (e) => created.push(e.name), { onExit: (err) => exited(err) })
    await sbx.files.write('/tmp/seen.txt', 'x')
    await created.until('seen.txt')
    await sbx.kill()
    assertSandboxDied(await exit)
    await assertGone(sbx)
  })

  test('a command running when the sandbox reaches its timeout', async () => {
    const sbx = await Sandbox.create()
    const seen = waitForText()
    const handle = await sbx.commands.run('echo ready; exec sleep 600', { background: true, onStdout: (d) => seen.push(d) })
    await seen.until('ready')
    // The shortest timeout E2B takes (one second): the wait below ends when the expiry kills it.
    await sbx.setTimeout(1000)
    assertSandboxDied(await handle.wait().catch((e: unknown) => e))
    await assertGone(sbx)
  })

  test('a command running when the sandbox is paused, which runs on after a resume', async () => {
    const sbx = await Sandbox.create()
    try {
      const seen = waitForText()
      const handle = await sbx.commands.run('echo ready; read line; echo "got $line"', { background: true, stdin: true, onStdout: (d) => seen.push(d) })
      await seen.until('ready')
      await sbx.pause()
      assertSandboxDied(await handle.wait().catch((e: unknown) => e))
      // A pause keeps the process: after a resume it can be reached again, and ends as itself.
      const resumed = await Sandbox.connect(sbx.sandboxId)
      const again = await resumed.commands.connect(handle.pid)
      await resumed.commands.sendStdin(handle.pid, 'hello\n')
      assert.match((await again.wait()).stdout, /got hello\n$/)
    } finally {
      await Sandbox.kill(sbx.sandboxId).catch(() => undefined)
    }
    await assertGone(sbx)
  })

  test('a command killed by the client while its sandbox lives still ends with CommandExitError', async () => {
    const sbx = await Sandbox.create()
    try {
      const seen = waitForText()
      const handle = await sbx.commands.run('echo ready; exec sleep 600', { background: true, onStdout: (d) => seen.push(d) })
      await seen.until('ready')
      assert.equal(await handle.kill(), true)
      const err = await handle.wait().catch((e: unknown) => e)
      assert.ok(err instanceof CommandExitError, `expected CommandExitError, got ${String(err)}`)
      assert.equal((await sbx.commands.run('echo still here')).stdout, 'still here\n')
    } finally {
      await sbx.kill()
    }
  })
})
