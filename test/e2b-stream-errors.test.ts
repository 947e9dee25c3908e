/**
 * envd's file routes when a stream breaks half-way: a read the sandbox fails, an upload its client
 * cuts off, a part that is never read. Each must end that one request; an error on a stream
 * nobody listened to ended the server's process, every sandbox's control with it. The server runs
 * in this test's process: were it to end, so would the test.
 */
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { describe, test } from 'node:test'
import { e2bSuite } from './helpers/e2b-env.js'
import { skipReason } from './helpers/stack.js'

const skip = skipReason()

describe('e2b envd: file streams that break', { skip: skip ?? false }, () => {
  const suite = e2bSuite()
  let envd: Record<string, string>
  let sandboxId: string

  /** Sends a request whose body is written by `write`; resolves with the answer, or with the error when there is none. */
  const send = (method: string, path: string, headers: Record<string, string>, write: (req: import('node:http').ClientRequest) => void): Promise<{ status: number; text: string } | Error> =>
    new Promise((resolve) => {
      const req = request(`${suite.stack.server.url}${path}`, { method, headers: { ...envd, ...headers } }, (res) => {
        let text = ''
        res.on('data', (c: Buffer) => (text += c.toString()))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
        res.on('error', (err) => resolve(err))
      })
      req.on('error', (err) => resolve(err))
      // A server that died answers nothing: bounded, so that the check after says so.
      req.setTimeout(30_000, () => req.destroy(new Error('no answer in 30 s')))
      write(req)
    })

  /** The server still answers: a file written and read back through envd. */
  const stillServes = async (): Promise<void> => {
    const put = await send('POST', '/files?path=/tmp/alive.txt', { 'content-type': 'application/octet-stream' }, (req) => req.end('alive'))
    assert.ok(!(put instanceof Error) && put.status === 200, String(put instanceof Error ? put : put.text))
    const got = await send('GET', '/files?path=/tmp/alive.txt', {}, (req) => req.end())
    assert.ok(!(got instanceof Error) && got.text === 'alive')
  }

  test('a gzip download whose read fails in the sandbox ends that download only', async () => {
    const res = await fetch(`${suite.stack.server.url}/sandboxes`, { method: 'POST', headers: { 'x-api-key': process.env.E2B_API_KEY!, 'content-type': 'application/json' }, body: JSON.stringify({ templateID: 'debian' }) })
    const created = (await res.json()) as { sandboxID: string; envdAccessToken: string }
    assert.equal(res.status, 201, JSON.stringify(created))
    sandboxId = created.sandboxID
    envd = { 'e2b-sandbox-id': created.sandboxID, 'x-access-token': created.envdAccessToken, authorization: `Basic ${Buffer.from('root:').toString('base64')}` }
    // Reading /proc/self/mem from its start fails (EIO) once the answer has begun.
    const answer = await send('GET', '/files?path=/proc/self/mem', { 'accept-encoding': 'gzip' }, (req) => req.end())
    assert.ok(answer instanceof Error || answer.status !== 200 || answer.text.length < 64, 'the failed read is no whole answer')
    await stillServes()
  })

  test('a gzip upload its client cuts off ends that upload only', async () => {
    const answer = await send('POST', '/files?path=/tmp/cut.bin', { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip', 'transfer-encoding': 'chunked' }, (req) => {
      req.write(Buffer.of(0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0x03))
      setTimeout(() => req.destroy(), 200)
    })
    assert.ok(answer instanceof Error, 'no answer to a cut upload')
    await stillServes()
  })

  test('a multipart upload refused before its part is read ends that upload only', async () => {
    const boundary = 'b0undary'
    const answer = await send('POST', '/files', { 'content-type': `multipart/form-data; boundary=${boundary}`, authorization: `Basic ${Buffer.from('nobody-such:').toString('base64')}` }, (req) => {
      req.write(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="/tmp/part.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`)
      // A part of several chunks, still arriving when the upload is refused.
      req.write(Buffer.alloc(256 * 1024, 1))
      setTimeout(() => req.end(Buffer.concat([Buffer.alloc(256 * 1024, 2), Buffer.from(`\r\n--${boundary}--\r\n`)])), 300)
    })
    assert.ok(answer instanceof Error || answer.status >= 400, String(answer instanceof Error ? answer : answer.text))
    await stillServes()
    await fetch(`${suite.stack.server.url}/sandboxes/${sandboxId}`, { method: 'DELETE', headers: { 'x-api-key': process.env.E2B_API_KEY! } })
  })
})
