/**
 * The edge under malformed input, on every route the app has (listed from the app itself, so a new
 * route is fuzzed too): hostile path parameters, bodies that are not JSON or not objects, every
 * known field with a value of the wrong kind, NUL and unicode in paths and names, query junk and
 * oversized headers. Every answer must be a 4xx with a message (never a 500, never a crash); a 400
 * about a field names it. The server answers normally afterwards.
 */
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { test } from 'node:test'
import { startTestServer, type TestResponse, type TestServer } from './test-server.fixture.js'

/** Path parameter values a client may send: each must be refused, never taken for a real thing. */
const hostileParams = ['%00', 'a%00b', '..%2F..%2Fetc%2Fpasswd', '-1', '0', '99999999999999999999999', '%E2%80%AE%F0%9F%92%A3', 'x'.repeat(4000), 'sb-zzzzzzzzzzzzzzzz', '%20', '%25']

/** Bodies that are not a JSON object (an empty body is no input: a route's defaults). */
const rawBodies = ['{nope', 'null', '[]', '"text"', '42', '1e999', '{"a":1}{"b":2}', '['.repeat(50_000), '{"a":'.repeat(20_000), '\u0000']

/** Every field name some route reads, with values of a kind no route takes for it. */
const fields = [
  'template', 'memoryMiB', 'cpus', 'pidsMax', 'diskMiB', 'timeoutMs', 'labels', 'env', 'network', 'runtime', 'cmd', 'argv', 'cwd', 'user',
  'stdinBase64', 'keepStdin', 'background', 'signal', 'dataBase64', 'close', 'path', 'parents', 'recursive', 'from', 'to', 'count', 'label',
  'min', 'max', 'steps', 'allowOut', 'denyOut', 'allowPublicTraffic', 'maskRequestHost', 'templateID', 'timeout', 'metadata', 'envVars',
  'autoPause', 'secure', 'allow_internet_access', 'snapshotId', 'name', 'pid', 'process', 'stdin', 'input', 'depth', 'selector', 'tag',
]
const wrongValues: unknown[] = [-1, 1e308, 'a\u0000b', null, [1], { $: 1 }]

/** Hono route patterns to concrete paths, each param from `values` (by name) or the hostile value. */
function fill(pattern: string, values: Record<string, string>, hostile?: { name: string; value: string }): string {
  return pattern.replace(/:(\w+)/g, (_, name: string) => (hostile?.name === name ? hostile.value : (values[name] ?? 'x')))
}

/** Headers that reach a route's validation: the API key, or an envd scope for the envd paths. */
function authFor(path: string, t: TestServer, envd: Record<string, string>): Record<string, string> {
  if (path === '/files' || path === '/health' || /^\/(process|filesystem)\./.test(path)) return envd
  if (!path.startsWith('/v1') && path !== '/metrics' && path !== '/healthz') return { 'x-api-key': t.server.apiKey }
  return {}
}

function assertRefused(res: TestResponse, what: string): void {
  assert.ok(res.status >= 400 && res.status < 500, `${what}: expected a 4xx, got ${res.status} ${res.body.toString().slice(0, 300)}`)
  const text = res.body.toString()
  assert.ok(text.length > 0, `${what}: a ${res.status} without a message`)
}

test('every route answers hostile input with a 4xx that says what was wrong', { timeout: 600_000 }, async () => {
  const t = await startTestServer()
  try {
    const sb = (await t.request('POST', '/v1/sandboxes', { body: {} })).json
    const e2bCreate = async () => (await t.request('POST', '/sandboxes', { body: { templateID: 'debian' }, key: null, headers: { 'x-api-key': t.server.apiKey } })).json
    // One E2B sandbox for the lifecycle routes (which pause and resume it), one that envd calls reach.
    const e2b = await e2bCreate()
    const envdSandbox = await e2bCreate()
    const envd = { 'e2b-sandbox-id': envdSandbox.sandboxID, 'x-access-token': envdSandbox.envdAccessToken, 'connect-protocol-version': '1' }
    const lenient: string[] = []
    const values = { id: sb.id, pid: '1', port: '8080', name: 'debian', template: 'debian' }
    const routes = [...new Map(t.server.routes.map((r) => [`${r.method} ${r.path}`, r])).values()]
    let cases = 0

    for (const route of routes) {
      const params = [...route.path.matchAll(/:(\w+)/g)].map((m) => m[1]!)
      const headers = authFor(route.path, t, envd)
      const e2bIds = route.path.startsWith('/sandboxes') ? { ...values, id: e2b.sandboxID } : values
      // 1. Each path parameter, hostile.
      for (const name of params) {
        for (const value of hostileParams) {
          const path = fill(route.path, e2bIds, { name, value })
          const res = await t.request(route.method, path, { headers, key: headers['x-api-key'] ? null : undefined, ...(route.method === 'GET' || route.method === 'DELETE' ? {} : { body: {} }) })
          assertRefused(res, `${route.method} ${path.slice(0, 120)}`)
          cases++
        }
      }
      if (route.method === 'GET' || route.method === 'DELETE') continue
      const path = fill(route.path, e2bIds)
      const isConnect = /^\/(process|filesystem)\./.test(route.path)
      const isUpload = route.path.endsWith('/files')
      if (isUpload) continue
      const contentType = 'application/json'
      const key = headers['x-api-key'] || isConnect ? null : undefined
      // A route that takes an unknown field without complaint is lenient (E2B's REST routes, as
      // E2B's API is: its SDKs may send fields of newer versions) or reads no body: listed, and
      // checked below; a lenient one still refuses a body that is not a JSON object.
      // (A Connect message is decoded by its protobuf schema, which ignores unknown fields as protobuf
      // does, since E2B's SDKs may send fields of newer versions: only malformed bodies go there.)
      if (!isConnect) {
        const probe = await t.request(route.method, path, { body: Buffer.from('{"zz_unknown_field":1}'), headers: { ...headers, 'content-type': contentType }, key })
        if (probe.status < 400) {
          lenient.push(`${route.method} ${route.path}`)
          if (route.path.endsWith('/pause')) continue
        }
      }
      // 2. Bodies that are not a JSON object.
      for (const raw of rawBodies) {
        const res = await t.request(route.method, path, { body: Buffer.from(raw), headers: { ...headers, 'content-type': contentType }, key })
        assertRefused(res, `${route.method} ${path} with body ${JSON.stringify(raw.slice(0, 20))}`)
        cases++
      }
      if (isConnect || lenient.includes(`${route.method} ${route.path}`)) continue
      // 3. Every field with a value of the wrong kind: a 400 names a field.
      for (const field of fields) {
        for (const value of wrongValues) {
          const body = Buffer.from(JSON.stringify({ [field]: value }))
          const res = await t.request(route.method, path, { body, headers: { ...headers, 'content-type': contentType }, key })
          const what = `${route.method} ${path} with ${body.toString().slice(0, 60)}`
          assertRefused(res, what)
          if (res.status === 400) {
            const message = String(res.json?.message ?? '')
            // `field: expected ...`, `unknown field "x": ...`, or `body: expected ...` for a body that is no object.
            assert.match(message, /^(unknown field "[^"]+":|[^\s:]+:) /, `${what}: the message names no field: ${message}`)
          }
          cases++
        }
      }
    }

    // 4. Query junk on the routes that read one.
    for (const q of ['path=%00', 'path=rel/ative', `path=/${'a'.repeat(5000)}`, 'path=/a%00b', 'state=bogus', 'label=nokey', 'color=red', 'limit=-1', 'nextToken=%00']) {
      for (const p of [`/v1/sandboxes/${sb.id}/files`, `/v1/sandboxes/${sb.id}/fs/list`, `/v1/sandboxes/${sb.id}/fs/stat`, '/v1/sandboxes']) {
        if (p === '/v1/sandboxes' && q.startsWith('path=')) continue
        if (p !== '/v1/sandboxes' && !q.startsWith('path=')) continue
        assertRefused(await t.request('GET', `${p}?${q}`), `GET ${p}?${q.slice(0, 40)}`)
        cases++
      }
    }

    // 5. A header past node's limit is refused by the parser (431), and the server goes on.
    const big = await t.request('GET', '/v1/sandboxes', { headers: { 'x-junk': 'j'.repeat(64 * 1024) } }).catch(() => ({ status: 431 }) as TestResponse)
    assert.equal(big.status, 431)

    assert.ok(cases > 3000, `only ${cases} cases ran`)
    // E2B's lenient routes, and pause, which reads no body: a new route that ignores unknown input must be added here on purpose.
    assert.deepEqual(lenient.sort(), ['POST /sandboxes/:id/connect', 'POST /sandboxes/:id/pause', 'POST /sandboxes/:id/resume', 'POST /v2/sandboxes/:id/connect', 'PUT /sandboxes/:id/network'])
    assert.equal((await t.request('GET', '/healthz')).status, 200)
    assert.equal((await t.request('GET', `/v1/sandboxes/${sb.id}`)).status, 200)
    const serverErrors = t.logs.records.filter((r) => (r.level as number) >= 50)
    assert.deepEqual(serverErrors.map((r) => r.msg), [], 'no request ended in a server error')
  } finally {
    await t.close()
  }
})

test('an upgrade whose target is no URL path is a 400, with or without a key, and the server goes on', async () => {
  const t = await startTestServer()
  try {
    const { port } = new URL(t.server.url)
    const upgradeTo = (target: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const socket = connect(Number(port), '127.0.0.1', () => socket.end(`GET ${target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`))
        let answer = ''
        socket.on('data', (chunk: Buffer) => (answer += chunk.toString()))
        socket.on('close', () => resolve(answer))
        socket.on('error', reject)
      })
    for (const target of ['/v1/sandboxes/%ZZ/pty', '/v1/sandboxes/%E0%A4%A/ports/80/tunnel', '/v1/sandboxes/sb-x/ports/%ZZ/tunnel', '//a:b']) {
      const answer = await upgradeTo(target)
      assert.match(answer, /^HTTP\/1\.1 400 invalid_argument\r\n/, `${target}: ${answer.slice(0, 200)}`)
      assert.match(answer, /request target: expected a URL path with valid %-escapes/)
    }
    assert.equal((await t.request('GET', '/healthz')).status, 200)
  } finally {
    await t.close()
  }
})
