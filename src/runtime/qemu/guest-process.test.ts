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
