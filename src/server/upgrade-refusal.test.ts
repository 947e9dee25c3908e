import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { test } from 'node:test'
import { until } from '../../test/helpers/until.js'
import { startTestServer } from './test-server.fixture.js'
import { refusedLingerMs } from './upgrade-refusal.js'

test("a refused upgrade's connection is closed by the server even when the client never closes its side", async () => {
  const t = await startTestServer()
  const sockets: Socket[] = []
  try {
    const { port, host } = new URL(t.server.url)
    const refusals = [
      { what: 'a terminal without a key', head: 'GET /v1/sandboxes/sb-nothere00000000/pty HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade', answer: /^HTTP\/1\.1 401 unauthenticated\r\n/ },
      { what: 'a tunnel without a key', head: 'GET /v1/sandboxes/sb-nothere00000000/ports/80/tunnel HTTP/1.1\r\nHost: x\r\nUpgrade: sandstorm-tunnel\r\nConnection: Upgrade', answer: /^HTTP\/1\.1 401 unauthenticated\r\n/ },
      { what: "a sandbox host's port of no sandbox", head: `GET / HTTP/1.1\r\nHost: 8080-sb-nothere00000000.${host}\r\nUpgrade: websocket\r\nConnection: Upgrade`, answer: /^HTTP\/1\.1 404 not_found\r\n/ },
      { what: 'a path that takes no upgrade', head: 'GET /v1/sandboxes HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade', answer: /^HTTP\/1\.1 404 not_found\r\n/ },
    ]
    for (const refusal of refusals) {
      // allowHalfOpen: the client keeps its side open after the server's answer and end.
      const socket = connect({ port: Number(port), host: '127.0.0.1', allowHalfOpen: true })
      sockets.push(socket)
      socket.on('error', () => undefined)
      let answer = ''
      socket.on('data', (chunk: Buffer) => (answer += chunk.toString()))
      let closed = false
      socket.on('close', () => (closed = true))
      socket.write(`${refusal.head}\r\n\r\n`)
      await once(socket, 'end')
      assert.match(answer, refusal.answer, `${refusal.what}: ${answer.slice(0, 200)}`)
      // The server's side is gone once a write of the client's is answered with a reset.
      await until(
        `the server to close the connection of ${refusal.what}`,
        async () => {
          if (!closed) socket.write('x')
          return closed
        },
        refusedLingerMs + 10_000,
      )
    }
    assert.equal((await t.request('GET', '/healthz')).status, 200)
  } finally {
    for (const socket of sockets) socket.destroy()
    await t.close()
  }
})
