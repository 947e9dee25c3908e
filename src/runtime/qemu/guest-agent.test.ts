/**
 * The guest agent against a peer that plays a hostile guest's qemu-ga: it starts every command and
 * never lets one end. The backend's own commands must not wait on it for ever.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import { connectGuestAgent } from './guest-agent.js'

describe('guest agent run()', () => {
  const dirs: string[] = []
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })

  /** A qemu-ga that answers sync and exec, and says "still running" to every status, or answers no status at all. */
  async function stuckGuest(answerStatus: boolean): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'sandstorm-guest-agent-'))
    dirs.push(dir)
    const path = join(dir, 'qga.sock')
    const server = createServer((socket) => {
      socket.on('error', () => undefined)
      // readline passes its input's errors on: a reset as the agent closes is not the test's failure.
      createInterface({ input: socket }).on('error', () => undefined).on('line', (line) => {
        const msg = JSON.parse(line) as { execute: string; arguments?: { id?: number } }
        if (msg.execute === 'guest-sync') socket.write(JSON.stringify({ return: msg.arguments?.id }) + '\n')
        else if (msg.execute === 'guest-exec') socket.write('{"return":{"pid":42}}\n')
        else if (msg.execute === 'guest-exec-status' && answerStatus) socket.write('{"return":{"exited":false}}\n')
      })
    })
    server.unref()
    await new Promise<void>((resolve) => server.listen(path, resolve))
    return path
  }

  for (const answerStatus of [true, false]) {
    it(`gives up with deadline_exceeded on a command that never ends (${answerStatus ? 'it says running' : 'no status answered'})`, { timeout: 30_000 }, async () => {
      const agent = await connectGuestAgent(await stuckGuest(answerStatus), 5000, () => false)
      try {
        await assert.rejects(agent.run('/bin/sh', ['-c', 'true'], [], undefined, 300), (err: unknown) => err instanceof SandstormError && err.code === 'deadline_exceeded')
      } finally {
        agent.close()
      }
    })
  }
})
