import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import { describe, it } from 'node:test'
import { startTestServer, type TestServer } from '../test-server.fixture.js'
import { closeOf, getRequest, heldBackend, rawClient, upgradeRequest, type HeldBackend, type RawClient } from './raw-peers.fixture.js'

/** A sandbox whose port 8000 is `backend`, and its host. */
async function sandboxOn(t: TestServer, backend: HeldBackend): Promise<string> {
  const sb = (await t.request('POST', '/v1/sandboxes', { body: {} })).json
  t.agent.sandboxes.get(sb.id)!.ports.set(8000, backend.port)
  return `8000-${sb.id}.${t.server.domain}`
}

const switched = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'

/** Writes `write()` to `socket` every few ms once its request came, until the returned stop is called. */
function streamer(first: string, next: string, last: string): { onConnection(socket: Socket): void; stop(): void } {
  const streams = new Set<{ socket: Socket; timer: NodeJS.Timeout }>()
  return {
    onConnection(socket) {
      socket.once('data', () => {
        socket.write(first)
        streams.add({ socket, timer: setInterval(() => socket.write(next), 20) })
      })
    },
    stop() {
      for (const s of streams) {
        clearInterval(s.timer)
        s.socket.write(last)
      }
      streams.clear()
    },
  }
}

// A timeout of its own: a relay that is never ended would hold the suite for good.
describe('a relay through ingress that carries nothing either way', { timeout: 30_000 }, () => {
  it('is ended on both sides: a request its app never answers gets 504 and both connections close, and so does an upgraded one gone silent', async () => {
    const t = await startTestServer({ ingressIdleMs: 200 })
    const silent = await heldBackend()
    const switching = await heldBackend((socket) => socket.once('data', () => socket.write(switched)))
    const clients: RawClient[] = []
    try {
      const port = Number(new URL(t.server.url).port)
      const request = rawClient(port, getRequest(await sandboxOn(t, silent)))
      clients.push(request)
      await silent.acceptedCount(1)
      await Promise.all([request.closed, closeOf(silent.accepted[0]!)])
      assert.match(request.received(), /^HTTP\/1\.1 504 /)
      assert.match(request.received(), /nothing went between the client and port 8000 of sandbox \\"sb-[a-z0-9]+\\" for 0\.2 s/)
      assert.match(request.received(), /\r\nconnection: close\r\n/i)

      const upgraded = rawClient(port, upgradeRequest(await sandboxOn(t, switching)))
      clients.push(upgraded)
      assert.match(await upgraded.until(/\r\n\r\n/), /^HTTP\/1\.1 101 /)
      await Promise.all([upgraded.closed, closeOf(switching.accepted[0]!)])
    } finally {
      for (const c of clients) c.socket.destroy()
      await silent.close()
      await switching.close()
      await t.close()
    }
  })

  it('is not a relay that keeps streaming: an answer and an upgraded connection that send on outlive silent ones beside them', async () => {
    // Far above the streams' 20 ms: only a stall of the whole process for a second could cut a stream.
    const t = await startTestServer({ ingressIdleMs: 1_000 })
    const silent = await heldBackend()
    const answer = streamer('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', '1\r\nx\r\n', '0\r\n\r\n')
    const answering = await heldBackend((socket) => answer.onConnection(socket))
    const frames = streamer(switched, 'x', 'end')
    const switching = await heldBackend((socket) => frames.onConnection(socket))
    const clients: RawClient[] = []
    try {
      const port = Number(new URL(t.server.url).port)
      const silentHost = await sandboxOn(t, silent)
      const streaming = rawClient(port, getRequest(await sandboxOn(t, answering)))
      const upgraded = rawClient(port, upgradeRequest(await sandboxOn(t, switching)))
      clients.push(streaming, upgraded)
      await Promise.all([streaming.until(/\r\n1\r\nx\r\n/), upgraded.until(/\r\n\r\nx/)])
      // Two silent relays, one after the other, are ended while the streams go on: more than
      // twice the idle time passes while they stream.
      for (let i = 1; i <= 2; i++) {
        const quiet = rawClient(port, getRequest(silentHost))
        clients.push(quiet)
        await quiet.closed
        assert.match(quiet.received(), /^HTTP\/1\.1 504 /)
      }
      answer.stop()
      frames.stop()
      const whole = await streaming.until(/\r\n0\r\n\r\n$/)
      assert.match(whole, /^HTTP\/1\.1 200 [\s\S]*\r\n0\r\n\r\n$/, 'the streamed answer was cut')
      assert.match(await upgraded.until(/end$/), /^HTTP\/1\.1 101 [\s\S]*x+end$/, 'the streaming upgrade was cut')
      assert.equal(streaming.socket.closed || upgraded.socket.closed, false)
    } finally {
      answer.stop()
      frames.stop()
      for (const c of clients) c.socket.destroy()
      await silent.close()
      await answering.close()
      await switching.close()
      await t.close()
    }
  })
})
