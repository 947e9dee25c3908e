import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { test } from 'node:test'
import { until } from '../../test/helpers/until.js'
import { SandstormError } from '../shared/index.js'
import { captureLogs, startTestServer } from './test-server.fixture.js'
import { refusedLingerMs, refuseUpgrade } from './upgrade-refusal.js'

test("a refused upgrade's connection is closed by the server even when the client never closes its side", async () => {
  const t = await startTestServer()
  const sockets: Socket[] = []
  try {
    const { port } = new URL(t.server.url)
    const refusals = [
      { what: 'a terminal without a key', head: 'GET /v1/sandboxes/sb-nothere00000000/pty HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade', answer: /^HTTP\/1\.1 401 unauthenticated\r\n/ },
      { what: 'a tunnel without a key', head: 'GET /v1/sandboxes/sb-nothere00000000/ports/80/tunnel HTTP/1.1\r\nHost: x\r\nUpgrade: sandstorm-tcp\r\nConnection: Upgrade', answer: /^HTTP\/1\.1 401 unauthenticated\r\n/ },
      // The test server's domain is localhost:<port>; a sandbox id is sb- and 16 characters.
      { what: "a sandbox host's port of no sandbox", head: `GET / HTTP/1.1\r\nHost: 8080-sb-nothere000000000.${t.server.domain}\r\nUpgrade: websocket\r\nConnection: Upgrade`, answer: /^HTTP\/1\.1 404 not_found\r\n[\s\S]*sandbox \\"sb-nothere000000000\\" not found/ },
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

test('a refused upgrade shows the message of an error only where the error may show it, and logs the rest', async () => {
  const server = createServer()
  const logs = captureLogs()
  const refusals: [SandstormError, string][] = [
    [new SandstormError('not_found', 'sandbox "sb-x" not found'), 'sandbox \\"sb-x\\" not found'],
    [new SandstormError('internal', 'runc failed at /var/lib/sandstorm/secret-path', { expose: false }), 'the server could not answer this upgrade; it logged why'],
  ]
  let next = 0
  server.on('connection', (socket) => {
    const [err] = refusals[next++]!
    refuseUpgrade(socket, err, logs.logger)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    for (const [err, shown] of refusals) {
      const socket = connect((server.address() as AddressInfo).port, '127.0.0.1')
      let answer = ''
      socket.on('data', (c: Buffer) => (answer += c.toString()))
      await once(socket, 'end')
      socket.destroy()
      assert.ok(answer.includes(`"message":"${shown}"`), answer)
      assert.ok(!err.expose === answer.includes('the server could not answer'), answer)
    }
    assert.ok(!JSON.stringify(logs.records).includes('sb-x'), 'an error the client may see is not logged as a failure')
    assert.ok(logs.records.some((r) => String(r.msg).includes('secret-path')), 'the hidden error is in the log whole')
  } finally {
    await new Promise((resolve) => server.close(resolve))
  }
})

