import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { startTestServer, type TestServer } from '../test-server.fixture.js'
import { closeOf, getRequest, heldBackend, rawClient, upgradeRequest, type HeldBackend, type RawClient } from './raw-peers.fixture.js'

/** A sandbox whose port 8000 is `backend`, and its host. */
async function sandboxOn(t: TestServer, backend: HeldBackend): Promise<{ id: string; host: string }> {
  const sb = (await t.request('POST', '/v1/sandboxes', { body: {} })).json
  t.agent.sandboxes.get(sb.id)!.ports.set(8000, backend.port)
  return { id: sb.id as string, host: `8000-${sb.id}.${t.server.domain}` }
}

/** The status line of the answer a client got, or what happened instead: the backend took one more connection. */
async function answerOrAccepted(client: RawClient, backend: HeldBackend, accepted: number): Promise<string> {
  return Promise.race([client.until(/\r\n\r\n/).then((text) => text.split('\r\n')[0]!), backend.acceptedCount(accepted).then(() => `the sandbox's app got connection ${accepted}`)])
}

describe('the budget of connections into sandboxes', () => {
  it('answers 503 past it, holding no more connections into sandboxes than it allows, for requests and upgrades alike; a closed one frees its slot', async () => {
    const t = await startTestServer({ maxUpstreamConnections: 3, maxUpstreamConnectionsPerSandbox: 8 })
    const backend = await heldBackend()
    const clients: RawClient[] = []
    try {
      const port = Number(new URL(t.server.url).port)
      const { host } = await sandboxOn(t, backend)
      // An app that accepts and never answers: each request holds its connection into the sandbox.
      clients.push(rawClient(port, getRequest(host)), rawClient(port, getRequest(host)), rawClient(port, upgradeRequest(host)))
      await backend.acceptedCount(3)
      for (const request of [getRequest(host), upgradeRequest(host)]) {
        const over = rawClient(port, request)
        clients.push(over)
        assert.match(await answerOrAccepted(over, backend, 4), /^HTTP\/1\.1 503 /)
        assert.match(await over.until(/may have/), /the server has 3 connections open into sandboxes, the most it may have/)
      }
      assert.equal(backend.accepted.length, 3)
      // A client that leaves takes its connection into the sandbox along (the server closes it, and
      // frees its slot, before the app can see it close), and its slot is free again.
      clients[0]!.socket.destroy()
      await Promise.race(backend.accepted.map(closeOf))
      clients.push(rawClient(port, getRequest(host)))
      await backend.acceptedCount(4)
    } finally {
      for (const c of clients) c.socket.destroy()
      await backend.close()
      await t.close()
    }
  })

  it('holds a share for each sandbox: one that takes its whole share leaves the rest to others, and an idle kept-alive connection makes room', async () => {
    const t = await startTestServer({ maxUpstreamConnections: 4, maxUpstreamConnectionsPerSandbox: 2 })
    const silent = await heldBackend()
    // An app that answers every request at once, on a kept-alive connection.
    const answering = await heldBackend((socket) => socket.on('data', () => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok')))
    const clients: RawClient[] = []
    const port = Number(new URL(t.server.url).port)
    const open = (host: string): RawClient => {
      const c = rawClient(port, getRequest(host))
      clients.push(c)
      return c
    }
    try {
      const a = await sandboxOn(t, silent)
      const b = await sandboxOn(t, answering)
      const c = await sandboxOn(t, silent)
      open(a.host)
      open(a.host)
      await silent.acceptedCount(2)
      const third = open(a.host)
      assert.match(await answerOrAccepted(third, silent, 3), /^HTTP\/1\.1 503 /)
      assert.match(await third.until(/may have/), new RegExp(`sandbox \\\\"${a.id}\\\\" has 2 connections open through the server, the most one sandbox may have`))
      // Another sandbox still gets through, and its connection stays in the pool once answered.
      assert.match(await open(b.host).until(/\r\n\r\nok/), /^HTTP\/1\.1 200 [\s\S]*ok$/)
      // Two more for a third sandbox fill the budget (2 + 2): the kept-alive one, idle, is closed to make room.
      open(c.host)
      open(c.host)
      await silent.acceptedCount(4)
      await closeOf(answering.accepted[0]!)
      // Full, and nothing idle to close: the next answers 503 for all of them.
      const full = open(b.host)
      assert.match(await answerOrAccepted(full, answering, 2), /^HTTP\/1\.1 503 /)
      assert.match(await full.until(/may have/), /the server has 4 connections open into sandboxes/)
    } finally {
      for (const client of clients) client.socket.destroy()
      await silent.close()
      await answering.close()
      await t.close()
    }
  })
})
