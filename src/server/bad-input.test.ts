import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startTestServer } from './test-server.fixture.js'
import type { TestServer } from './test-server.fixture.js'

/** Sends a request and checks it is refused with this status and a message that matches. */
async function refused(t: TestServer, method: string, path: string, body: unknown, status: number, message: RegExp): Promise<void> {
  const res = await t.request(method, path, body === undefined ? {} : { body })
  assert.equal(res.status, status, `${method} ${path} ${JSON.stringify(body)}: ${res.body.toString()}`)
  assert.match(res.json.message, message)
  assert.equal(res.json.code, status === 404 ? 'not_found' : status === 413 ? 'payload_too_large' : 'invalid_argument')
}

test('bad create bodies answer 400 naming the field, what was expected and what came', async () => {
  const t = await startTestServer()
  try {
    await refused(t, 'POST', '/v1/sandboxes', { memoryMiB: 0 }, 400, /^memoryMiB: expected an integer from 16 to 65536, got 0$/)
    await refused(t, 'POST', '/v1/sandboxes', { memoryMiB: 1024 * 1024 }, 400, /^memoryMiB: expected an integer from 16 to 65536, got 1048576$/)
    await refused(t, 'POST', '/v1/sandboxes', { memoryMiB: 'lots' }, 400, /^memoryMiB: expected an integer from 16 to 65536, got "lots"$/)
    await refused(t, 'POST', '/v1/sandboxes', { timeoutMs: -5 }, 400, /^timeoutMs: expected an integer from 1 to 604800000, got -5$/)
    await refused(t, 'POST', '/v1/sandboxes', { cpus: 0 }, 400, /^cpus: expected a number greater than 0 and at most 64, got 0$/)
    await refused(t, 'POST', '/v1/sandboxes', { template: 'Bad Name' }, 400, /^template: expected a template name such as "debian", got "Bad Name"$/)
    await refused(t, 'POST', '/v1/sandboxes', { labels: { 'a b': 'x' } }, 400, /^labels\.a b: expected the key to be a label key/)
    await refused(t, 'POST', '/v1/sandboxes', { color: 'red' }, 400, /^unknown field "color": expected only template, memoryMiB, cpus/)
    await refused(t, 'POST', '/v1/sandboxes', [], 400, /^body: expected an object, got \[\]$/)
    const notJson = await t.request('POST', '/v1/sandboxes', { body: Buffer.from('{nope'), headers: { 'content-type': 'application/json' } })
    assert.equal(notJson.status, 400)
    assert.match(notJson.json.message, /^body: expected JSON, got "\{nope"/)
    assert.equal(t.agent.calls.get('create'), undefined, 'no bad request reached the agent')
    assert.equal((await t.request('GET', '/v1/sandboxes')).json.length, 0)
  } finally {
    await t.close()
  }
})

test('bad timeout, exec, file and process requests answer 4xx with what was expected', async () => {
  const t = await startTestServer()
  try {
    const sb = (await t.request('POST', '/v1/sandboxes', { body: {} })).json
    const at = `/v1/sandboxes/${sb.id}`
    await refused(t, 'POST', `${at}/timeout`, { timeoutMs: -1 }, 400, /^timeoutMs: expected an integer from 1 to 604800000, got -1$/)
    await refused(t, 'POST', `${at}/timeout`, {}, 400, /^timeoutMs: expected an integer from 1 to 604800000, got nothing$/)
    await refused(t, 'POST', `${at}/exec`, { cmd: 'echo', argv: ['echo'] }, 400, /^body: expected exactly one of "cmd" \(a shell string\) or "argv" \(an array\)/)
    await refused(t, 'POST', `${at}/exec`, {}, 400, /expected exactly one of "cmd"/)
    await refused(t, 'POST', `${at}/exec`, { cmd: 'cat', stdinBase64: '***' }, 400, /^stdinBase64: expected base64 bytes, got "\*\*\*"$/)
    await refused(t, 'POST', `${at}/exec`, { cmd: 'echo', cwd: 'tmp' }, 400, /^cwd: expected an absolute path \(starting with \/\), got "tmp"$/)
    await refused(t, 'GET', `${at}/files?path=etc/passwd`, undefined, 400, /^path: expected an absolute path \(starting with \/\), got "etc\/passwd"$/)
    await refused(t, 'GET', `${at}/files`, undefined, 400, /^path: expected a string, got nothing$/)
    await refused(t, 'POST', `${at}/fs/mkdir`, { path: 'rel' }, 400, /^path: expected an absolute path/)
    await refused(t, 'POST', `${at}/fs/rename`, { from: '/a', to: 'b' }, 400, /^to: expected an absolute path/)
    await refused(t, 'POST', `${at}/processes/abc/signal`, {}, 400, /^pid: expected a process id \(a positive integer\), got "abc"$/)
    await refused(t, 'POST', `${at}/processes/1/signal`, { signal: 'SIGFOO' }, 400, /^signal: expected one of "SIGKILL", .*got "SIGFOO"$/)
    assert.equal(t.agent.calls.get('exec'), undefined)
  } finally {
    await t.close()
  }
})

test('exec, files and processes on an unknown or destroyed sandbox answer 404', async () => {
  const t = await startTestServer()
  try {
    const sb = (await t.request('POST', '/v1/sandboxes', { body: {} })).json
    assert.equal((await t.request('DELETE', `/v1/sandboxes/${sb.id}`)).status, 204)
    const gone = `sandbox "${sb.id}" not found`
    await refused(t, 'POST', `/v1/sandboxes/${sb.id}/exec`, { cmd: 'echo hi' }, 404, new RegExp(`^${gone}$`))
    await refused(t, 'POST', `/v1/sandboxes/${sb.id}/exec`, { argv: ['echo'], background: true }, 404, new RegExp(`^${gone}$`))
    await refused(t, 'GET', `/v1/sandboxes/${sb.id}/files?path=/etc/hostname`, undefined, 404, new RegExp(`^${gone}$`))
    await refused(t, 'GET', `/v1/sandboxes/${sb.id}/processes`, undefined, 404, new RegExp(`^${gone}$`))
    await refused(t, 'GET', `/v1/sandboxes/${sb.id}/fs/stat?path=/`, undefined, 404, new RegExp(`^${gone}$`))
    await refused(t, 'POST', '/v1/sandboxes/sb-zzzzzzzzzzzzzzzz/exec', { cmd: 'echo hi' }, 404, /^sandbox "sb-zzzzzzzzzzzzzzzz" not found$/)
    assert.equal(t.agent.calls.get('exec'), undefined)
  } finally {
    await t.close()
  }
})

test('a JSON body declared past the cap answers 413 before it is read', async () => {
  const t = await startTestServer()
  try {
    const res = await t.open('POST', '/v1/sandboxes', { headers: { 'content-length': String(100 * 1024 * 1024), 'content-type': 'application/json' } })
    assert.equal(res.statusCode, 413)
    res.destroy()
    assert.equal(t.agent.calls.get('templates'), undefined)
  } finally {
    await t.close()
  }
})

test('a JSON body to a route whose path only ends like an upload\'s is capped: 413, with or without Content-Length', async () => {
  const t = await startTestServer()
  try {
    // A pool for a template named "files" (or "build", sent as a tar) is no upload route.
    const body = Buffer.from(JSON.stringify({ min: 1, pad: 'x'.repeat(9 * 1024 * 1024) }))
    for (const [path, type] of [['/v1/pools/files', 'application/json'], ['/v1/pools/build', 'application/x-tar']] as const) {
      const declared = await t.request('PUT', path, { body, headers: { 'content-type': type } })
      assert.equal(declared.status, 413, `${path} (Content-Length): ${declared.body.toString().slice(0, 200)}`)
      assert.equal(declared.json.code, 'payload_too_large')
      const chunks = Array.from({ length: 10 }, (_, i) => body.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024))
      const chunked = await t.request('PUT', path, { chunks, headers: { 'content-type': type } })
      assert.equal(chunked.status, 413, `${path} (chunked): ${chunked.body.toString().slice(0, 200)}`)
    }
    assert.equal((await t.request('GET', '/v1/pools')).json.length, 0)
  } finally {
    await t.close()
  }
})
