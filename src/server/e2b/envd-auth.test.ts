import assert from 'node:assert/strict'
import { request } from 'node:http'
import { describe, it } from 'node:test'
import { startTestServer } from '../test-server.fixture.js'

/** Sends only the headers of a POST that announces a big body; resolves with the answer's status, or 'waiting' after 3 s. */
function headersOnly(url: string, headers: Record<string, string>): Promise<number | 'waiting'> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': String(8_000_000), 'connect-protocol-version': '1', ...headers } })
    const timer = setTimeout(() => (req.destroy(), resolve('waiting')), 3000)
    req.on('response', (res) => {
      clearTimeout(timer)
      res.resume()
      req.destroy()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', () => undefined)
    req.flushHeaders()
  })
}

/**
 * Sends a chunked POST (no Content-Length) 64 KiB at a time, as fast as the server takes it,
 * until the answer comes; the body is never ended. Resolves with the answer's status.
 */
function chunkedUntilAnswered(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'connect-protocol-version': '1', ...headers } })
    const chunk = Buffer.alloc(64 * 1024, 0x20)
    let answered = false
    req.on('response', (res) => {
      answered = true
      res.resume()
      req.destroy()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', (err) => answered || reject(err))
    const send = (): void => {
      while (!answered) if (!req.write(chunk)) return void req.once('drain', send)
    }
    req.write('{"path": "/"')
    req.once('socket', (socket) => socket.once('connect', send))
  })
}

describe("envd's calls", () => {
  it('answer a chunked body without a token 401 before reading it, and body-carrying requests to key-less paths take a key', async () => {
    const t = await startTestServer()
    try {
      const sbx = (await t.request('POST', '/sandboxes', { body: { templateID: 'debian' }, key: null, headers: { 'x-api-key': t.server.apiKey } })).json
      for (const path of ['/filesystem.Filesystem/Stat', '/process.Process/Start']) {
        // The body limit would have read 8 MiB of it and answered 413: the answer comes before that.
        assert.equal(await chunkedUntilAnswered(`${t.server.url}${path}`, { 'e2b-sandbox-id': sbx.sandboxID, 'x-access-token': 'not-the-token' }), 401, path)
        assert.equal(await chunkedUntilAnswered(`${t.server.url}${path}`, {}), 400, path)
      }
      // No route reads these bodies, and no key or token came: nothing is buffered for them either.
      for (const path of ['/health', '/healthz', '/envd/anything']) {
        assert.equal(await chunkedUntilAnswered(`${t.server.url}${path}`, { 'e2b-sandbox-id': sbx.sandboxID, 'x-access-token': sbx.envdAccessToken }), 401, path)
      }
      // A caller with the token still gets its chunked call through.
      const res = await t.request('POST', '/filesystem.Filesystem/Stat', { key: null, chunks: [Buffer.from('{"path"'), Buffer.from(': "/"}')], headers: { 'content-type': 'application/json', 'e2b-sandbox-id': sbx.sandboxID, 'x-access-token': sbx.envdAccessToken, 'connect-protocol-version': '1' } })
      assert.notEqual(res.status, 401)
      assert.notEqual(res.status, 413)
    } finally {
      await t.close()
    }
  })


  it('refuse a caller without the sandbox\'s token from its headers, before reading a body', async () => {
    const t = await startTestServer()
    try {
      const sbx = (await t.request('POST', '/sandboxes', { body: { templateID: 'debian' }, key: null, headers: { 'x-api-key': t.server.apiKey } })).json
      const url = `${t.server.url}/filesystem.Filesystem/Stat`
      assert.equal(await headersOnly(url, { 'e2b-sandbox-id': sbx.sandboxID, 'x-access-token': 'not-the-token' }), 401)
      assert.equal(await headersOnly(url, {}), 400)
      // With the token the call goes on to its handler, which runs its helper in the sandbox.
      const execs = t.agent.calls.get('exec') ?? 0
      await t.request('POST', '/filesystem.Filesystem/Stat', { key: null, body: { path: '/' }, headers: { 'e2b-sandbox-id': sbx.sandboxID, 'x-access-token': sbx.envdAccessToken, 'connect-protocol-version': '1' } })
      assert.equal(t.agent.calls.get('exec'), execs + 1)
    } finally {
      await t.close()
    }
  })

  it('try every running sandbox\'s key for a signed URL that names none only so often, and only for a signature of the right shape', async () => {
    const t = await startTestServer()
    try {
      for (let i = 0; i < 3; i++) await t.request('POST', '/sandboxes', { body: { templateID: 'debian' }, key: null, headers: { 'x-api-key': t.server.apiKey } })
      const guess = `v1_${'A'.repeat(43)}`
      const statuses: number[] = []
      const started = Date.now()
      for (let i = 0; i < 100; i++) statuses.push((await t.request('GET', `/files?path=/etc/passwd&signature=${encodeURIComponent(guess)}`, { key: null })).status)
      const seconds = (Date.now() - started) / 1000
      // A full budget (40), and what refills while the requests run (20 a second): no more.
      const scanned = statuses.filter((s) => s === 401).length
      assert.ok(scanned <= 40 + Math.ceil(20 * seconds), `${scanned} of 100 guesses in ${seconds} s were tried against every sandbox`)
      assert.equal(statuses.filter((s) => s === 429).length, 100 - scanned)
      assert.ok(scanned < 100, 'no guess was refused')
      // A signature of another shape is refused without a scan, budget or not.
      assert.equal((await t.request('GET', '/files?path=/etc/passwd&signature=nope', { key: null })).status, 401)
    } finally {
      await t.close()
    }
  })
})
