/**
 * The JSON channel against a peer that sends what a hostile guest's root could write on the guest
 * agent's port: lines that are JSON but no object, an error that is no object, and a line without
 * end. None may throw in the agent; a line without end closes the channel.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import { connectJsonChannel, guestAgentMaxLine, qmpMaxLine } from './json-channel.js'

describe('connectJsonChannel', () => {
  let dir: string
  let server: Server
  let peer: Promise<Socket>
  let path: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-json-channel-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  const listen = async (name: string): Promise<void> => {
    path = join(dir, name)
    peer = new Promise((resolve) => {
      server = createServer(resolve)
    })
    await new Promise<void>((resolve) => server.listen(path, resolve))
  }

  it('skips lines that are no object, takes an error that is no object as an error, and answers in order', async () => {
    await listen('a.sock')
    const channel = await connectJsonChannel(path, 'test agent', guestAgentMaxLine)
    const socket = await peer
    const first = channel.call('one')
    const second = channel.call('two')
    socket.write('1\nnull\n[1,2]\n"text"\n{"error":null}\n{"return":2}\n')
    await assert.rejects(first, (e: unknown) => e instanceof SandstormError && e.message === 'test agent: error')
    assert.equal(await second, 2)
    channel.close()
    server.close()
  })

  it('closes the channel on a line past 64 MiB without end', async () => {
    await listen('b.sock')
    const channel = await connectJsonChannel(path, 'test agent', guestAgentMaxLine)
    const socket = await peer
    // The channel resets the connection under the writes.
    socket.on('error', () => undefined)
    const waiting = assert.rejects(channel.call('never'), (e: unknown) => e instanceof SandstormError && e.code === 'unavailable')
    const block = 'x'.repeat(1 << 20)
    for (let i = 0; i < 65 && !socket.destroyed; i++) {
      if (!socket.write(block)) await new Promise((resolve) => (socket.once('drain', resolve), socket.once('close', resolve)))
    }
    await waiting
    await channel.closed
    socket.destroy()
    server.close()
  })

  it("takes QMP's lines up to 1 MiB: an answer of 900 KiB, but not a line past 1 MiB", { timeout: 20_000 }, async () => {
    await listen('c.sock')
    const channel = await connectJsonChannel(path, 'QMP', qmpMaxLine)
    const socket = await peer
    socket.on('error', () => undefined)
    const big = channel.call<string>('big')
    socket.write(`{"return":"${'y'.repeat(900 * 1024)}"}\n`)
    assert.equal((await big).length, 900 * 1024)
    const waiting = assert.rejects(channel.call('never'), (e: unknown) => e instanceof SandstormError && e.code === 'unavailable')
    socket.write('z'.repeat(qmpMaxLine + 1))
    await waiting
    await channel.closed
    socket.destroy()
    server.close()
  })
})
