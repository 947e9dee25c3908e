/**
 * Ingress: a sandbox's ports through the server's own port, by Host or by E2B's headers, with
 * streaming bodies and WebSocket upgrades; private sandboxes; port-forward tunnels. Once through
 * `up` (the agent in process), once through a remote agent over the fleet link.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { request, type IncomingHttpHeaders } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { runAgent, type RunningAgent } from '../src/agent/index.js'
import { startServer, type RunningServer } from '../src/server/index.js'
import { silentLogger } from '../src/shared/index.js'
import { forwardPort, listAgents, Sandbox } from '@sandstorm/sdk/node'
import { sh } from './helpers/sandbox-shell.js'
import { skipReason, startStack, templatesDir, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'
import { openWebSocket, sandboxWebServer } from './helpers/web-fixtures.js'

const skip = skipReason() ?? false

/** One request to the server at `port` on 127.0.0.1, with any Host; the answer read whole. */
function call(port: number, o: { method?: string; path?: string; headers?: IncomingHttpHeaders; body?: Buffer | (() => AsyncIterable<Buffer>) }): Promise<{ status: number; body: Buffer; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: o.method ?? 'GET', path: o.path ?? '/', headers: o.headers, setHost: o.headers?.host === undefined }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts), headers: res.headers }))
      res.on('error', reject)
    })
    req.on('error', reject)
    const body = o.body
    if (typeof body === 'function') {
      void (async () => {
        for await (const chunk of body()) if (!req.write(chunk)) await new Promise((r) => req.once('drain', r))
        req.end()
      })()
    } else req.end(body)
  })
}

/** Starts the web server of web-fixtures.ts on `port` in the sandbox and waits until it answers through ingress. */
async function serveIn(sbx: Sandbox, port: number, serverPort: number, headers: IncomingHttpHeaders): Promise<void> {
  await sbx.files.write('/tmp/web.py', sandboxWebServer)
  await sh(sbx, `setsid python3 /tmp/web.py ${port} >/dev/null 2>&1 &`)
  await until(`the sandbox's server on ${port}`, async () => (await call(serverPort, { path: '/host', headers })).status === 200)
}

/** Ingress checks shared by both setups. */
function ingressSuite(setup: () => { port: number; domain: string; conn: { apiUrl: string; apiKey: string } }): void {
  let sbx: Sandbox
  let host: string
  before(async () => {
    const { port, domain, conn } = setup()
    sbx = await Sandbox.create('debian', { ...conn })
    host = `8000-${sbx.sandboxId}.${domain}`
    await serveIn(sbx, 8000, port, { host })
  })
  after(() => sbx?.kill())

  it('reaches a port by Host <port>-<id>.<domain> and by the E2B headers', async () => {
    const { port } = setup()
    const byHost = await call(port, { path: '/host', headers: { host } })
    assert.equal(byHost.status, 200)
    assert.equal(byHost.body.toString(), host)
    const byHeaders = await call(port, { path: '/host', headers: { 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '8000' } })
    assert.equal(byHeaders.status, 200)
    assert.equal(byHeaders.body.toString(), `127.0.0.1:${port}`)
  })

  it('streams a 64 MiB upload and a 64 MiB download', async () => {
    const { port } = setup()
    const size = 64 * 1024 * 1024
    const chunk = randomBytes(1 << 20)
    const hash = createHash('sha256')
    for (let i = 0; i < 64; i++) hash.update(chunk)
    const up = await call(port, {
      method: 'POST',
      path: '/sha256',
      headers: { host, 'content-length': String(size) },
      body: async function* () {
        for (let i = 0; i < 64; i++) yield chunk
      },
    })
    assert.equal(up.body.toString(), `${size} ${hash.digest('hex')}`)
    const down = await call(port, { path: `/bytes/${size}`, headers: { host } })
    assert.equal(down.status, 200)
    assert.equal(down.body.length, size)
  })

  it('closes the connection into the sandbox when the client goes away mid-answer', async () => {
    const { port } = setup()
    const name = `hold-${Date.now()}`
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: `/hold/${name}`, headers: { host } }, (res) => {
        res.once('data', () => {
          req.destroy()
          resolve()
        })
      })
      req.on('error', (err) => (req.destroyed ? undefined : reject(err)))
      req.end()
    })
    await until("the sandbox's server to see its client go", async () => (await sh(sbx, `test -e /tmp/${name}.closed`)).exitCode === 0)
  })

  it('upgrades to WebSocket both ways', async () => {
    const { port } = setup()
    const ws = await openWebSocket(port, '/ws', { host })
    ws.send('hello')
    assert.equal(await ws.next(), 'echo hello')
    ws.send('again')
    assert.equal(await ws.next(), 'echo again')
    ws.close()
  })

  it('ends the connection of an upgrade the sandbox does not switch, after its answer, so no later request reaches the sandbox on it', async () => {
    const { port } = setup()
    const socket = connect(port, '127.0.0.1')
    let text = ''
    socket.setEncoding('latin1').on('data', (d: string) => (text += d))
    const ended = new Promise<boolean>((resolve) => {
      socket.once('close', () => resolve(true))
      setTimeout(() => resolve(false), 10_000).unref()
    })
    // The sandbox's server answers this upgrade as a plain request (200, its headers) and keeps the connection.
    socket.write(`GET /headers HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: chat, sandstorm-key.c2VjcmV0\r\n\r\n`)
    await until('the answer to the upgrade', async () => text.includes('x-forwarded-for'))
    socket.write(`GET /host HTTP/1.1\r\nHost: second-request\r\n\r\n`)
    const closed = await ended
    socket.destroy()
    assert.match(text, /^HTTP\/1\.1 200 /)
    assert.match(text, /\r\nConnection: close\r\n/i)
    assert.match(text, /^sec-websocket-protocol: chat$/m, 'the subprotocols reach the sandbox')
    assert.doesNotMatch(text, /sandstorm-key/, 'but never a key offered as one')
    assert.doesNotMatch(text, /second-request/, 'the next request on the connection reached the sandbox')
    assert.equal(closed, true, 'the connection stayed open after the answer')
  })

  it("never passes on the envd token, a key in a repeated header or the client's X-Forwarded-For, and keeps cookies and caches to the sandbox host", async () => {
    const { port, conn } = setup()
    const seen = async (headers: Record<string, string | string[]>) => (await call(port, { path: '/headers', headers: { host, ...headers } as IncomingHttpHeaders })).body.toString()
    assert.doesNotMatch(await seen({ 'x-access-token': 'envd-token' }), /envd-token/)
    const twice = await seen({ authorization: ['Bearer the-apps-own', `Bearer ${conn.apiKey}`] })
    assert.match(twice, /^authorization: Bearer the-apps-own$/m)
    assert.doesNotMatch(twice, new RegExp(conn.apiKey))
    assert.doesNotMatch(await seen({ 'x-api-key': ['not-a-key', conn.apiKey] }), new RegExp(conn.apiKey))
    // The app reads where a request came from in the server's X-Forwarded-For alone, never the client's.
    const origin = await seen({ 'x-forwarded-for': '6.6.6.6', forwarded: 'for=6.6.6.6' })
    assert.deepEqual(origin.match(/^x-forwarded-for: .*$/gm), ['x-forwarded-for: 127.0.0.1'])
    assert.doesNotMatch(origin, /6\.6\.6\.6/)

    const byHost = await call(port, { path: '/cookie', headers: { host } })
    assert.deepEqual(byHost.headers['set-cookie'], ['session=s1; Path=/; HttpOnly'], 'the cookie is for the sandbox host alone')
    assert.equal(byHost.headers['cache-control'], 'public, max-age=31536000')
    const byHeaders = await call(port, { path: '/cookie', headers: { 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '8000' } })
    assert.equal(byHeaders.headers['cache-control'], 'no-store', "an answer routed by headers, maybe under the server's own host, is never cached")
    assert.match(String(byHeaders.headers.vary), /E2b-Sandbox-Id/)
  })

  it('answers 502 for a port nothing listens on, saying so, and 404 for an unknown sandbox', async () => {
    const { port, domain } = setup()
    const closed = await call(port, { headers: { host: `8001-${sbx.sandboxId}.${domain}` } })
    assert.equal(closed.status, 502)
    assert.match(JSON.parse(closed.body.toString()).message, /nothing listens on port 8001/)
    const unknown = await call(port, { headers: { host: `8000-sb-aaaaaaaaaaaaaaaa.${domain}` } })
    assert.equal(unknown.status, 404)
  })

  it('waits for a server that is still starting', async () => {
    const { port, domain } = setup()
    const answer = call(port, { path: '/host', headers: { host: `8002-${sbx.sandboxId}.${domain}` } })
    // The request is on its way first; python3's start takes most of the ingress's 3 s of retries on a busy host.
    await sh(sbx, 'sleep 0.1; setsid python3 /tmp/web.py 8002 >/dev/null 2>&1 &')
    assert.equal((await answer).status, 200)
  })

  it('tunnels raw TCP for port-forward', async () => {
    const { conn } = setup()
    const forward = await forwardPort(await Sandbox.connect(sbx.sandboxId, conn), 8000)
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        const s = connect(forward.localPort, '127.0.0.1', () => s.end('GET /host HTTP/1.0\r\nHost: forwarded\r\n\r\n'))
        let text = ''
        s.setEncoding('utf8').on('data', (d: string) => (text += d))
        s.on('end', () => resolve(text))
        s.on('error', reject)
      })
      assert.match(reply, /^HTTP\/1\.[01] 200[\s\S]*\r\n\r\nforwarded$/)
    } finally {
      await forward.close()
    }
  })
}

describe('ingress through `up`', { skip, timeout: 240_000 }, () => {
  let stack: Stack
  before(async () => {
    stack = await startStack()
  })
  after(() => stack?.close())
  const setup = () => ({ port: Number(new URL(stack.server.url).port), domain: stack.server.domain, conn: stack.conn })

  describe('the common cases', () => ingressSuite(setup))

  it('a private sandbox answers only with its traffic token or an API key', async () => {
    const { port, domain } = setup()
    const sbx = await Sandbox.create('debian', { ...stack.conn, network: { allowPublicTraffic: false } })
    try {
      assert.ok(sbx.trafficAccessToken, 'the create answer carries the token')
      const host = `8000-${sbx.sandboxId}.${domain}`
      await serveIn(sbx, 8000, port, { host, 'e2b-traffic-access-token': sbx.trafficAccessToken })
      assert.equal((await call(port, { path: '/host', headers: { host } })).status, 403)
      assert.equal((await call(port, { path: '/host', headers: { host, 'e2b-traffic-access-token': 'x'.repeat(64) } })).status, 403)
      assert.equal((await call(port, { path: '/host', headers: { host, 'e2b-traffic-access-token': sbx.trafficAccessToken } })).status, 200)
      assert.equal((await call(port, { path: '/host', headers: { host, authorization: `Bearer ${stack.conn.apiKey}` } })).status, 200)
      // The code in the sandbox never sees an API key, in either header; an app's own Authorization passes.
      const seen = async (headers: IncomingHttpHeaders) => (await call(port, { path: '/headers', headers: { host, ...headers } })).body.toString()
      assert.doesNotMatch(await seen({ authorization: `Bearer ${stack.conn.apiKey}` }), /^authorization:/m)
      assert.doesNotMatch(await seen({ 'x-api-key': stack.conn.apiKey }), /^x-api-key:/m)
      assert.doesNotMatch(await seen({ 'e2b-traffic-access-token': sbx.trafficAccessToken, 'x-api-key': stack.conn.apiKey }), new RegExp(stack.conn.apiKey))
      assert.match(await seen({ 'e2b-traffic-access-token': sbx.trafficAccessToken, authorization: 'Bearer the-apps-own' }), /^authorization: Bearer the-apps-own$/m)
    } finally {
      await sbx.kill()
    }
  })

  it('maskRequestHost sets the Host the sandbox sees', async () => {
    const { port, domain } = setup()
    const sbx = await Sandbox.create('debian', { ...stack.conn, network: { maskRequestHost: 'localhost:${PORT}' } })
    try {
      const host = `8000-${sbx.sandboxId}.${domain}`
      await serveIn(sbx, 8000, port, { host })
      assert.equal((await call(port, { path: '/host', headers: { host } })).body.toString(), 'localhost:8000')
    } finally {
      await sbx.kill()
    }
  })

  it('refuses the ports of a sandbox without a network', async () => {
    const { port, domain } = setup()
    const sbx = await Sandbox.create('debian', { ...stack.conn, network: 'none' })
    try {
      const r = await call(port, { headers: { host: `8000-${sbx.sandboxId}.${domain}` } })
      assert.equal(r.status, 409)
      assert.match(JSON.parse(r.body.toString()).message, /network "none"/)
    } finally {
      await sbx.kill()
    }
  })
})

describe('ingress through a remote agent', { skip, timeout: 240_000 }, () => {
  let dir: string
  let server: RunningServer
  let agent: RunningAgent
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-ingress-fleet-'))
    const logger = silentLogger()
    server = await startServer({ dataDir: join(dir, 'server'), port: 0, logger, fleet: { host: '127.0.0.1', port: 0, insecure: true } })
    agent = await runAgent({ serverUrl: `127.0.0.1:${server.fleet!.port}`, token: server.fleet!.joinToken, dataDir: join(dir, 'agent'), templatesDir, insecure: true, logger })
    await until('a live agent', async () => (await listAgents({ apiUrl: server.url, apiKey: server.apiKey })).some((a) => a.state === 'live'))
  })
  after(async () => {
    for (const s of (await Sandbox.list({ apiUrl: server.url, apiKey: server.apiKey }).catch(() => []))) await Sandbox.kill(s.id, { apiUrl: server.url, apiKey: server.apiKey }).catch(() => undefined)
    await agent?.close()
    await server?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  // A suite of its own, so that its sandbox is killed (its after hook) before the server closes.
  describe('the common cases', () => ingressSuite(() => ({ port: Number(new URL(server.url).port), domain: server.domain, conn: { apiUrl: server.url, apiKey: server.apiKey } })))
})
