/**
 * Bad input end to end, against the real agent: each answers a 4xx whose message says what was
 * expected, and afterwards the sandbox made at the start still works and nothing extra is on disk.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { FileTooLargeError, NotFoundError, Sandbox } from '@sandstorm/sdk'
import { sandboxIdsOnDisk } from './helpers/leftovers.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? false
const maxFileBytes = 1024 * 1024

describe('bad input end to end', { skip }, () => {
  let stack: Stack
  let sbx: Sandbox

  before(async () => {
    stack = await startStack({ maxFileBytes })
    sbx = await Sandbox.create('debian', { ...stack.conn })
  })
  after(async () => {
    await stack?.close()
  })

  /** A raw request: status and error body, so that both can be checked as a client sees them. */
  async function call(method: string, path: string, options: { json?: unknown; body?: BodyInit; key?: string | null; headers?: Record<string, string> } = {}) {
    const headers: Record<string, string> = { ...options.headers }
    if (options.key !== null) headers.authorization = `Bearer ${options.key ?? stack.conn.apiKey}`
    let body = options.body
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json'
      body = JSON.stringify(options.json)
    }
    const res = await fetch(`${stack.conn.apiUrl}${path}`, { method, headers, body, duplex: 'half' } as RequestInit)
    const text = await res.text()
    let parsed: { code?: string; message?: string } = {}
    try {
      parsed = JSON.parse(text) as typeof parsed
    } catch {
      // not JSON: checked by the caller through `text`
    }
    return { status: res.status, code: parsed.code, message: parsed.message ?? '', text }
  }

  const files = (path: string) => `/v1/sandboxes/${sbx.sandboxId}/files?path=${encodeURIComponent(path)}`

  it('rejects memory 0 and 1 TB, saying the allowed range', async () => {
    for (const memoryMiB of [0, 1024 * 1024]) {
      const r = await call('POST', '/v1/sandboxes', { json: { template: 'debian', memoryMiB } })
      assert.equal(r.status, 400, r.text)
      assert.equal(r.code, 'invalid_argument')
      assert.match(r.message, /memoryMiB/)
      assert.match(r.message, /16|65536/)
    }
  })

  it('rejects a negative timeout and a wrong type', async () => {
    const r = await call('POST', '/v1/sandboxes', { json: { template: 'debian', timeoutMs: -5 } })
    assert.equal(r.status, 400, r.text)
    assert.match(r.message, /timeoutMs/)
    const typed = await call('POST', '/v1/sandboxes', { json: { template: 'debian', cpus: 'two' } })
    assert.equal(typed.status, 400, typed.text)
    assert.match(typed.message, /cpus/)
    const unknown = await call('POST', '/v1/sandboxes', { json: { template: 'debian', colour: 'red' } })
    assert.equal(unknown.status, 400, unknown.text)
    assert.match(unknown.message, /colour/)
    const notJson = await call('POST', '/v1/sandboxes', { body: '{not json', headers: { 'content-type': 'application/json' } })
    assert.equal(notJson.status, 400, notJson.text)
    assert.match(notJson.message, /JSON/i)
    const exec = await call('POST', `/v1/sandboxes/${sbx.sandboxId}/exec`, { json: { cmd: 'true', timeoutMs: -1 } })
    assert.equal(exec.status, 400, exec.text)
    assert.match(exec.message, /timeoutMs/)
    const both = await call('POST', `/v1/sandboxes/${sbx.sandboxId}/exec`, { json: { cmd: 'true', argv: ['true'] } })
    assert.equal(both.status, 400, both.text)
    assert.match(both.message, /exactly one of/)
  })

  it('answers 404 for an unknown template, naming the ones there are', async () => {
    const r = await call('POST', '/v1/sandboxes', { json: { template: 'nope' } })
    assert.equal(r.status, 404, r.text)
    assert.match(r.message, /"nope"/)
    assert.match(r.message, /expected one of .*debian/)
  })

  it('answers 400 for a relative path, saying an absolute one is expected', async () => {
    for (const [method, path, json] of [
      ['GET', files('etc/passwd'), undefined],
      ['GET', `/v1/sandboxes/${sbx.sandboxId}/fs/list?path=tmp`, undefined],
      ['POST', `/v1/sandboxes/${sbx.sandboxId}/fs/mkdir`, { path: 'a/b' }],
      ['POST', `/v1/sandboxes/${sbx.sandboxId}/exec`, { cmd: 'pwd', cwd: 'tmp' }],
    ] as const) {
      const r = await call(method, path, { json })
      assert.equal(r.status, 400, `${method} ${path}: ${r.text}`)
      assert.match(r.message, /absolute path/)
    }
  })

  it('answers 413 for a file over maxFileBytes, and the file does not exist afterwards', async () => {
    const big = new Uint8Array(2 * maxFileBytes)
    // With a Content-Length: refused before anything is read.
    const declared = await call('PUT', files('/tmp/declared.bin'), { body: big })
    assert.equal(declared.status, 413, declared.text)
    assert.match(declared.message, new RegExp(`at most ${maxFileBytes} bytes`))
    assert.equal(await sbx.files.exists('/tmp/declared.bin'), false)
    // Streamed without a length: cut off at the limit, and what was written is removed.
    async function* chunks() {
      for (let i = 0; i < 32; i++) yield new Uint8Array(64 * 1024)
    }
    await assert.rejects(sbx.files.write('/tmp/streamed.bin', chunks()), (e: unknown) => {
      assert.ok(e instanceof FileTooLargeError, `expected FileTooLargeError, got ${String(e)}`)
      assert.match(e.message, /at most/)
      return true
    })
    assert.equal(await sbx.files.exists('/tmp/streamed.bin'), false)
    // An existing file is not clobbered by a refused upload.
    await sbx.files.write('/tmp/kept.txt', 'old')
    await assert.rejects(sbx.files.write('/tmp/kept.txt', chunks()), FileTooLargeError)
    assert.equal(await sbx.files.read('/tmp/kept.txt'), 'old')
    // Exactly at the limit is fine.
    await sbx.files.write('/tmp/limit.bin', new Uint8Array(maxFileBytes))
    assert.equal((await sbx.files.getInfo('/tmp/limit.bin')).size, maxFileBytes)
    await sbx.files.remove('/tmp/limit.bin')
  })

  it('answers 404 for an exec, a read and a kill on a destroyed sandbox', async () => {
    const doomed = await Sandbox.create('debian', { ...stack.conn })
    await doomed.kill()
    const r = await call('POST', `/v1/sandboxes/${doomed.sandboxId}/exec`, { json: { cmd: 'true' } })
    assert.equal(r.status, 404, r.text)
    assert.match(r.message, new RegExp(doomed.sandboxId))
    await assert.rejects(doomed.commands.run('true'), NotFoundError)
    await assert.rejects(doomed.files.read('/etc/hostname'), NotFoundError)
    assert.equal((await call('DELETE', `/v1/sandboxes/${doomed.sandboxId}`)).status, 404)
    assert.equal((await call('GET', `/v1/sandboxes/${sbx.sandboxId}/processes/999999/events`)).status, 404)
  })

  it('answers 401 for a missing or wrong API key, saying what is expected', async () => {
    const missing = await call('GET', '/v1/sandboxes', { key: null })
    assert.equal(missing.status, 401)
    assert.match(missing.message, /missing API key.*Authorization: Bearer/)
    const wrong = await call('GET', '/v1/sandboxes', { key: 'not-the-key' })
    assert.equal(wrong.status, 401)
    assert.match(wrong.message, /wrong API key/)
    const exec = await call('POST', `/v1/sandboxes/${sbx.sandboxId}/exec`, { json: { cmd: 'touch /tmp/unauthorized' }, key: 'nope' })
    assert.equal(exec.status, 401)
    assert.equal(await sbx.files.exists('/tmp/unauthorized'), false)
    const health = await call('GET', '/healthz', { key: null })
    assert.equal(health.status, 200)
  })

  it('afterwards the first sandbox still works and nothing extra is on disk', async () => {
    const r = await sbx.commands.run('echo alive; ls /tmp')
    assert.equal(r.stdout.split('\n')[0], 'alive')
    assert.doesNotMatch(r.stdout, /declared|streamed|unauthorized/)
    assert.deepEqual(await sandboxIdsOnDisk(stack.dataDir), [sbx.sandboxId])
    const listed = await Sandbox.list(stack.conn)
    assert.deepEqual(listed.map((s) => s.id), [sbx.sandboxId])
  })
})
