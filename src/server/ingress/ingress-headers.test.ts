import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import { startTestServer, type TestServer } from '../test-server.fixture.js'

/** A server standing for a sandbox's app: answers every request with the raw header lines it got (JSON), and `answer`'s headers; upgrades get a 101 with them. */
async function app(answer: Record<string, string | string[]>): Promise<Server> {
  const server = createServer((req, res) => {
    for (const [name, value] of Object.entries(answer)) res.setHeader(name, value)
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify(req.rawHeaders))
  })
  server.on('upgrade', (_req, socket) => {
    const lines = Object.entries(answer).flatMap(([name, value]) => [value].flat().map((v) => `${name}: ${v}`))
    socket.end(['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', ...lines, '', ''].join('\r\n'))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return server
}

/** A sandbox whose port 8000 is `backend`, and its host. */
async function sandboxOn(t: TestServer, backend: Server): Promise<string> {
  const sb = (await t.request('POST', '/v1/sandboxes', { body: {} })).json
  t.agent.sandboxes.get(sb.id)!.ports.set(8000, (backend.address() as AddressInfo).port)
  return `8000-${sb.id}.${t.server.domain}`
}

/** A GET through the server with these raw header lines (repeats kept), on a connection of its own. */
function get(t: TestServer, raw: string[]): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  const { port } = new URL(t.server.url)
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/', headers: [...raw, 'Connection', 'close'] as never, setHost: false, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => (body += c))
      res.on('end', () => res.socket.once('close', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body })).end())
    })
      .on('error', reject)
      .end()
  })
}

/** The values of every line named `name` (any case) in raw pairs. */
function linesOf(raw: string[], name: string): string[] {
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!)
  return out
}

describe('headers through ingress', () => {
  it("gives the sandbox's app the server's own X-Forwarded-* alone: a client's X-Forwarded-*, Forwarded and X-Real-IP are dropped", async () => {
    const t = await startTestServer()
    const backend = await app({})
    try {
      const host = await sandboxOn(t, backend)
      const res = await get(t, [
        'Host', host,
        'X-Forwarded-For', '6.6.6.6',
        'x-forwarded-for', '7.7.7.7, 8.8.8.8',
        'X-Forwarded-Proto', 'https',
        'X-Forwarded-Host', 'bank.example',
        'X-Forwarded-Port', '443',
        'Forwarded', 'for=6.6.6.6;proto=https',
        'X-Real-IP', '6.6.6.6',
        'X-App', 'kept',
      ])
      assert.equal(res.status, 200)
      const seen = JSON.parse(res.body) as string[]
      assert.deepEqual(linesOf(seen, 'x-forwarded-for'), ['127.0.0.1'], 'one X-Forwarded-For: the real peer')
      assert.deepEqual(linesOf(seen, 'x-forwarded-proto'), ['http'])
      assert.deepEqual(linesOf(seen, 'x-forwarded-host'), [host])
      assert.deepEqual(linesOf(seen, 'x-forwarded-port'), [])
      assert.deepEqual(linesOf(seen, 'forwarded'), [])
      assert.deepEqual(linesOf(seen, 'x-real-ip'), [])
      assert.deepEqual(linesOf(seen, 'x-app'), ['kept'], "the client's other headers go on")
    } finally {
      backend.close()
      await t.close()
    }
  })

  it("never passes on a sandbox's Clear-Site-Data, which would clear every sandbox's cookies (the site is all of them), by HTTP or in a 101", async () => {
    const t = await startTestServer()
    const backend = await app({ 'Clear-Site-Data': '"cookies", "storage"', 'Set-Cookie': 'a=1; Domain=localhost; Path=/', 'X-App': 'kept' })
    try {
      const host = await sandboxOn(t, backend)
      const res = await get(t, ['Host', host])
      assert.equal(res.status, 200)
      assert.equal(res.headers['clear-site-data'], undefined)
      assert.equal(res.headers['x-app'], 'kept', "the app's other headers go back")
      assert.deepEqual(res.headers['set-cookie'], ['a=1; Path=/'])

      const socket = connect(Number(new URL(t.server.url).port), '127.0.0.1')
      let head = ''
      socket.setEncoding('latin1').on('data', (d: string) => (head += d))
      socket.write(`GET /ws HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`)
      await once(socket, 'close')
      assert.match(head, /^HTTP\/1\.1 101 /)
      assert.match(head, /\r\nX-App: kept\r\n/i)
      assert.doesNotMatch(head, /clear-site-data/i)
    } finally {
      backend.close()
      await t.close()
    }
  })
})
