import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startTestServer } from './test-server.fixture.js'
import type { TestServer } from './test-server.fixture.js'

async function newSandbox(t: TestServer): Promise<string> {
  return (await t.request('POST', '/v1/sandboxes', { body: {} })).json.id as string
}

test('PUT streams the body into the sandbox and GET streams it back as octet-stream', async () => {
  const t = await startTestServer()
  try {
    const id = await newSandbox(t)
    const bytes = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 256))
    const put = await t.request('PUT', `/v1/sandboxes/${id}/files?path=/tmp/data.bin`, { body: bytes })
    assert.equal(put.status, 204)
    const chunked = await t.request('PUT', `/v1/sandboxes/${id}/files?path=/tmp/chunked`, { chunks: [Buffer.from('ab'), Buffer.from('cd')] })
    assert.equal(chunked.status, 204)
    assert.equal(t.agent.sandboxes.get(id)!.files.get('/tmp/chunked')!.toString(), 'abcd')

    const get = await t.request('GET', `/v1/sandboxes/${id}/files?path=/tmp/data.bin`)
    assert.equal(get.status, 200)
    assert.equal(get.headers['content-type'], 'application/octet-stream')
    assert.deepEqual(get.body, bytes)

    const empty = await t.request('PUT', `/v1/sandboxes/${id}/files?path=/tmp/empty`, { body: Buffer.alloc(0) })
    assert.equal(empty.status, 204)
    assert.equal((await t.request('GET', `/v1/sandboxes/${id}/files?path=/tmp/empty`)).body.length, 0)
  } finally {
    await t.close()
  }
})

test('reading a missing file answers 404 in JSON, not a 200 that breaks off', async () => {
  const t = await startTestServer()
  try {
    const id = await newSandbox(t)
    const res = await t.request('GET', `/v1/sandboxes/${id}/files?path=/nope`)
    assert.equal(res.status, 404)
    assert.equal(res.json.code, 'not_found')
    assert.match(res.json.message, /\/nope: expected an existing file/)
  } finally {
    await t.close()
  }
})

test('an upload past maxFileBytes answers 413 and writes nothing, with or without Content-Length', async () => {
  const t = await startTestServer({ maxFileBytes: 1024 })
  try {
    const id = await newSandbox(t)
    const declared = await t.request('PUT', `/v1/sandboxes/${id}/files?path=/tmp/big`, { body: Buffer.alloc(4096) })
    assert.equal(declared.status, 413)
    assert.deepEqual(declared.json, { code: 'payload_too_large', message: 'file too large: expected at most 1024 bytes, got 4096 (Content-Length)' })

    const chunks = [Buffer.alloc(600), Buffer.alloc(600)]
    const streamed = await t.request('PUT', `/v1/sandboxes/${id}/files?path=/tmp/big`, { chunks })
    assert.equal(streamed.status, 413)
    assert.match(streamed.json.message, /^file too large: expected at most 1024 bytes, got more/)
    assert.equal(t.agent.sandboxes.get(id)!.files.has('/tmp/big'), false)

    const fits = await t.request('PUT', `/v1/sandboxes/${id}/files?path=/tmp/small`, { body: Buffer.alloc(1024) })
    assert.equal(fits.status, 204)
  } finally {
    await t.close()
  }
})

test('fs routes list, stat, mkdir, rename and remove through the agent', async () => {
  const t = await startTestServer()
  try {
    const id = await newSandbox(t)
    const at = `/v1/sandboxes/${id}`
    assert.equal((await t.request('POST', `${at}/fs/mkdir`, { body: { path: '/work' } })).status, 204)
    assert.equal((await t.request('PUT', `${at}/files?path=/work/a.txt`, { body: Buffer.from('hello') })).status, 204)
    assert.equal((await t.request('POST', `${at}/fs/rename`, { body: { from: '/work/a.txt', to: '/work/b.txt' } })).status, 204)

    const list = await t.request('GET', `${at}/fs/list?path=/work`)
    assert.deepEqual(list.json.map((e: { name: string; type: string; size: number }) => [e.name, e.type, e.size]), [['b.txt', 'file', 5]])
    const stat = await t.request('GET', `${at}/fs/stat?path=/work`)
    assert.equal(stat.json.type, 'dir')

    assert.equal((await t.request('POST', `${at}/fs/remove`, { body: { path: '/work/b.txt' } })).status, 204)
    const gone = await t.request('GET', `${at}/fs/stat?path=/work/b.txt`)
    assert.deepEqual([gone.status, gone.json.code], [404, 'not_found'])
  } finally {
    await t.close()
  }
})
