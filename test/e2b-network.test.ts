/**
 * The unmodified `e2b` SDK's network options against a real Sandstorm: allowInternetAccess,
 * network.{allowOut, denyOut, allowPublicTraffic, maskRequestHost}, updateNetwork and getHost,
 * with a test internet (helpers/internet.ts) for egress and the server's ingress for ports.
 */
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { after, before, describe, test } from 'node:test'
import { Sandbox, SandboxError } from 'e2b'
import { useStackForE2b } from './helpers/e2b-env.js'
import { createTestInternet, type TestInternet } from './helpers/internet.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason()

/** Reaches `host` (as getHost built it) through the server, as a browser resolving *.localhost to loopback would. */
function get(stack: Stack, host: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const port = Number(new URL(stack.server.url).port)
    request({ host: '127.0.0.1', port, path: '/', headers: { ...headers, host }, setHost: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
      .on('error', reject)
      .end()
  })
}

/** A command's outcome: the HTTP status it got from a test host, or FAIL. */
const fetchIn = (sbx: Sandbox, url: string) =>
  sbx.commands
    .run(`python3 -c "import urllib.request as u; print(u.urlopen('${url}', timeout=5).status)" 2>/dev/null || echo FAIL`)
    .then((r) => r.stdout.trim())

describe('e2b SDK: network', { skip: skip ?? false, timeout: 120_000 }, () => {
  let stack: Stack
  let net: TestInternet

  before(async () => {
    net = await createTestInternet()
    stack = await startStack({ network: { publicCidrs: [net.cidr], dnsUpstreams: [net.addresses.dns] } })
    useStackForE2b(stack)
  })
  after(async () => {
    await stack?.close()
    await net?.remove()
  })

  test('allowInternetAccess and network.allowOut/denyOut hold, and updateNetwork replaces them', async () => {
    const open = await Sandbox.create()
    const closed = await Sandbox.create({ allowInternetAccess: false })
    const listed = await Sandbox.create({ network: { allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'] } })
    try {
      assert.equal(await fetchIn(open, 'http://allowed.test/'), '200')
      assert.equal(await fetchIn(closed, 'http://allowed.test/'), 'FAIL')
      assert.equal(await fetchIn(listed, 'http://allowed.test/'), '200')
      assert.equal(await fetchIn(listed, 'http://denied.test/'), 'FAIL')
      const info = await listed.getInfo()
      assert.equal(info.allowInternetAccess, false)
      assert.deepEqual([info.network?.allowOut, info.network?.denyOut], [['allowed.test'], ['0.0.0.0/0']])

      await open.updateNetwork({ denyOut: ['0.0.0.0/0'] })
      assert.equal(await fetchIn(open, 'http://allowed.test/'), 'FAIL')
      await closed.updateNetwork({ allowInternetAccess: true })
      assert.equal(await fetchIn(closed, 'http://allowed.test/'), '200')
      // What E2B's SDK raises for a 400 of its API: a SandboxError with the status and the server's message.
      await assert.rejects(open.updateNetwork({ allowOut: ['allowed.test'] }), (err: unknown) => err instanceof SandboxError && (err as SandboxError & { statusCode?: number }).statusCode === 400 && /denyOut to contain 0\.0\.0\.0\/0/.test(String(err)))
    } finally {
      await Promise.all([open.kill(), closed.kill(), listed.kill()])
    }
  })

  test('getHost reaches a port through the server; a private sandbox wants its traffic token; maskRequestHost', async () => {
    const sbx = await Sandbox.create({ network: { allowPublicTraffic: false, maskRequestHost: 'inside:${PORT}' } })
    try {
      assert.ok(sbx.trafficAccessToken)
      const host = sbx.getHost(8000)
      assert.equal(host, `8000-${sbx.sandboxId}.${stack.server.domain}`)
      await sbx.commands.run(
        `python3 -c "
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(self.headers['Host'].encode())
http.server.HTTPServer(('0.0.0.0', 8000), H).serve_forever()" >/dev/null 2>&1`,
        { background: true },
      )
      const token = { 'e2b-traffic-access-token': sbx.trafficAccessToken! }
      await until('the server in the sandbox', async () => (await get(stack, host, token)).status === 200)
      assert.deepEqual(await get(stack, host, token), { status: 200, body: 'inside:8000' })
      assert.equal((await get(stack, host)).status, 403)
      const info = await sbx.getInfo()
      assert.equal(info.network?.allowPublicTraffic, false)
      assert.equal(info.network?.maskRequestHost, 'inside:${PORT}')
    } finally {
      await sbx.kill()
    }
  })

  test('a request for a port by E2B headers on E2B_SANDBOX_URL reaches it too', async () => {
    const sbx = await Sandbox.create()
    try {
      await sbx.commands.run('cd /tmp && echo hi > index.html && python3 -m http.server 8000 >/dev/null 2>&1', { background: true })
      const url = `${process.env.E2B_SANDBOX_URL}/index.html`
      const headers = { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8000' }
      await until('the server in the sandbox', async () => (await fetch(url, { headers })).status === 200)
      assert.equal(await (await fetch(url, { headers })).text(), 'hi\n')
    } finally {
      await sbx.kill()
    }
  })
})
