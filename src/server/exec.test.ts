import assert from 'node:assert/strict'
import { once } from 'node:events'
import { test } from 'node:test'
import { ndjsonLines, startTestServer } from './test-server.fixture.js'
import type { TestServer } from './test-server.fixture.js'

const text = (base64: string): string => Buffer.from(base64, 'base64').toString()

async function newSandbox(t: TestServer): Promise<string> {
  return (await t.request('POST', '/v1/sandboxes', { body: {} })).json.id as string
}

test('a foreground exec streams NDJSON events one by one as they happen, ending with the result', async () => {
  const t = await startTestServer()
  try {
    const id = await newSandbox(t)
    const res = await t.open('POST', `/v1/sandboxes/${id}/exec`, { body: { cmd: 'wait' } })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['content-type'], 'application/x-ndjson')
    const lines = ndjsonLines(res)

    // Each event arrives while the command still runs: the stream is not buffered to the end.
    const start = (await lines.next()).value
    assert.equal(start.type, 'start')
    const pid = start.pid as number
    assert.deepEqual(t.agent.sandboxes.get(id)!.processes.get(pid)!.argv, ['/bin/sh', '-c', 'wait'])
    t.agent.print(id, pid, 'stdout', 'hello\n')
    assert.deepEqual((await lines.next()).value, { type: 'stdout', data: Buffer.from('hello\n').toString('base64') })
    t.agent.print(id, pid, 'stderr', 'oops\n')
    assert.equal(text((await lines.next()).value.data), 'oops\n')
    t.agent.finish(id, pid, 3)
    const end = (await lines.next()).value
    assert.equal(end.type, 'end')
    assert.equal(end.result.exitCode, 3)
    assert.equal((await lines.next()).done, true)
  } finally {
    await t.close()
  }
})

test('exec sends start once, argv as it is, and stdin bytes from base64', async () => {
  const t = await startTestServer()
  try {
    const id = await newSandbox(t)
    const echo = await t.request('POST', `/v1/sandboxes/${id}/exec`, { body: { cmd: 'echo hi there' } })
    const events = echo.body.toString().trim().split('\n').map((l) => JSON.parse(l))
    assert.deepEqual(events.map((e) => e.type), ['start', 'stdout', 'end'])
    assert.equal(text(events[1].data), 'hi there\n')
    assert.equal(events[2].result.exitCode, 0)

    const cat = await t.request('POST', `/v1/sandboxes/${id}/exec`, { body: { argv: ['cat'], stdinBase64: Buffer.from('from stdin').toString('base64') } })
    const catEvents = cat.body.toString().trim().split('\n').map((l) => JSON.parse(l))
    assert.equal(text(catEvents[1].data), 'from stdin')
    const pid = catEvents[0].pid as number
    assert.deepEqual(t.agent.sandboxes.get(id)!.processes.get(pid)!.argv, ['cat'])
  } finally {
    await t.close()
  }
})

test('a background exec answers 201 {pid}; the process is listed, fed, followed and signalled', async () => {
  const t = await startTestServer()
  try {
    const id = await newSandbox(t)
    const res = await t.request('POST', `/v1/sandboxes/${id}/exec`, { body: { cmd: 'cat', keepStdin: true, background: true } })
    assert.equal(res.status, 201)
    const pid = res.json.pid as number
    const listed = await t.request('GET', `/v1/sandboxes/${id}/processes`)
    assert.deepEqual(listed.json.map((p: { pid: number; running: boolean }) => [p.pid, p.running]), [[pid, true]])

    const stdin = { dataBase64: Buffer.from('abc').toString('base64'), close: true }
    assert.equal((await t.request('POST', `/v1/sandboxes/${id}/processes/${pid}/stdin`, { body: stdin })).status, 204)
    const followed = await t.request('GET', `/v1/sandboxes/${id}/processes/${pid}/events`)
    assert.equal(followed.headers['content-type'], 'application/x-ndjson')
    const events = followed.body.toString().trim().split('\n').map((l) => JSON.parse(l))
    assert.deepEqual(events.map((e) => e.type), ['start', 'stdout', 'end'])
    assert.equal(text(events[1].data), 'abc')

    const sleeper = (await t.request('POST', `/v1/sandboxes/${id}/exec`, { body: { cmd: 'wait', background: true } })).json.pid
    assert.equal((await t.request('POST', `/v1/sandboxes/${id}/processes/${sleeper}/signal`, { body: { signal: 'SIGTERM' } })).status, 204)
    assert.equal(t.agent.sandboxes.get(id)!.processes.get(sleeper)!.result!.exitCode, 143)

    const unknown = await t.request('GET', `/v1/sandboxes/${id}/processes/999999/events`)
    assert.deepEqual([unknown.status, unknown.json.code], [404, 'not_found'])
  } finally {
    await t.close()
  }
})

test('a client that goes away stops the follow but not the process, which can be followed again', async () => {
  const t = await startTestServer()
  try {
    const id = await newSandbox(t)
    const res = await t.open('POST', `/v1/sandboxes/${id}/exec`, { body: { cmd: 'wait' } })
    const lines = ndjsonLines(res)
    const pid = (await lines.next()).value.pid as number
    const followEnded = once(t.agent.events, 'follow-ended')
    res.destroy()
    const [ended] = (await followEnded) as [{ pid: number; aborted: boolean }]
    assert.deepEqual(ended, { id, pid, aborted: true })
    assert.equal(t.agent.sandboxes.get(id)!.processes.get(pid)!.result, null, 'the process still runs')

    t.agent.print(id, pid, 'stdout', 'later\n')
    t.agent.finish(id, pid, 0)
    const again = await t.request('GET', `/v1/sandboxes/${id}/processes/${pid}/events`)
    const events = again.body.toString().trim().split('\n').map((l) => JSON.parse(l))
    assert.deepEqual(events.map((e) => e.type), ['start', 'stdout', 'end'])
  } finally {
    await t.close()
  }
})

test('closing the server ends in-flight follows and leaves the process running', async () => {
  const t = await startTestServer()
  let closed = false
  try {
    const id = await newSandbox(t)
    const res = await t.open('POST', `/v1/sandboxes/${id}/exec`, { body: { cmd: 'wait' } })
    const lines = ndjsonLines(res)
    const pid = (await lines.next()).value.pid as number
    const followEnded = once(t.agent.events, 'follow-ended')
    const closing = t.close()
    const [ended] = (await followEnded) as [{ aborted: boolean }]
    assert.equal(ended.aborted, true)
    // The body ends without an `end` event: the client can tell the stream was cut short.
    for await (const line of lines) assert.notEqual(line.type, 'end')
    await closing
    closed = true
    assert.equal(t.agent.sandboxes.get(id)!.processes.get(pid)!.result, null)
    assert.equal(t.agent.sandboxes.has(id), true, 'sandboxes outlive the server')
  } finally {
    if (!closed) await t.close()
  }
})
