import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { test } from 'node:test'
import { startFakeApi, type FakeApi } from '@sandstorm/sdk/testing'
import { runCli, type Ran } from './cli-run.fixture.js'
import { errorLine } from './program.js'
import { createOutputWriter, printable } from './terminal-text.js'

/** What a hostile guest, image or agent puts in text: a title change, a colour, a bell, a CR that rewrites the line, an 8-bit CSI, a newline. */
const hostile = 'pwn\x1b]0;owned\x07\x1b[2J\rgood\x9b31m\x7f\nsecond line'

/** Any byte a terminal would obey (tab and newline aside). */
const obeyed = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/

test('printable shows every control character but tab as a visible \\xNN, newline too unless multiline', () => {
  assert.equal(printable('a\x1b[31mb\x07\tc\r\x9b\x00'), 'a\\x1b[31mb\\x07\tc\\x0d\\x9b\\x00')
  assert.equal(printable('one\ntwo'), 'one\\x0atwo')
  assert.equal(printable('one\r\ntwo\n\x1b', { multiline: true }), 'one\ntwo\n\\x1b')
  assert.equal(printable('plain text, ünïcode ✓'), 'plain text, ünïcode ✓')
})

test('errorLine shows the first line of a message, printable', () => {
  assert.equal(errorLine(new Error(hostile)), 'sandstorm: pwn\\x1b]0;owned\\x07\\x1b[2J\\x0dgood\\x9b31m\\x7f')
})

test('step output goes raw to a pipe, and escaped to a terminal (a character split across chunks kept whole)', () => {
  const sink = (isTTY: boolean): { out: Writable & { isTTY?: boolean }; text: () => string } => {
    const chunks: Buffer[] = []
    const out = Object.assign(new Writable({ write: (c: Buffer, _e, done) => (chunks.push(c), done()) }), { isTTY })
    return { out, text: () => Buffer.concat(chunks).toString() }
  }
  const bytes = Buffer.from('\x1b[31mred ✓\r\nnext\n')
  const split = bytes.indexOf(Buffer.from('✓')) + 1
  for (const isTTY of [false, true]) {
    const s = sink(isTTY)
    const write = createOutputWriter(s.out)
    write(bytes.subarray(0, split))
    write(bytes.subarray(split))
    assert.equal(s.text(), isTTY ? '\\x1b[31mred ✓\nnext\n' : bytes.toString())
  }
})

/**
 * A server that answers as a hostile fleet would: agents, logs, deletes and a template build whose
 * text carries `hostile`; everything else goes on to the fake API (so `run` can create and exec).
 */
async function startHostileServer(fake: FakeApi): Promise<{ url: string; close: () => Promise<void> }> {
  const json = (res: ServerResponse, status: number, body: unknown): void => void res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    const metrics = { load1: 0, memoryFreeMiB: 1, memoryTotalMiB: 1, diskFreeMiB: 1, sandboxes: 0 }
    if (path === '/v1/agents') {
      return json(res, 200, { agents: [{ id: 'ag-1', hostname: hostile, state: 'live', labels: { zone: hostile }, runtimes: [], cpus: 1, memoryMiB: 1, templates: [], lastHeartbeatAt: new Date().toISOString(), metrics }] })
    }
    if (path === '/v1/logs') {
      return json(res, 200, { commands: [{ sandboxId: 'sb-1', agentId: 'ag-1', argv: ['sh', '-c', hostile], exitCode: 0, durationMs: 1, outputBytes: 0, endedAt: new Date().toISOString() }] })
    }
    if (req.method === 'DELETE') return json(res, 409, { code: 'failed_precondition', message: hostile })
    if (req.method === 'GET' && path === '/v1/sandboxes') return json(res, 409, { code: 'failed_precondition', message: hostile })
    if (path.endsWith('/build')) {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      const events = [
        { type: 'progress', message: hostile },
        { type: 'step', index: 0, cmd: hostile },
        { type: 'stdout', index: 0, data: Buffer.from('out\x1b[2J\n').toString('base64') },
        { type: 'error', code: 'invalid_argument', message: hostile },
      ]
      return void res.end(events.map((e) => `${JSON.stringify(e)}\n`).join(''))
    }
    const target = new URL(fake.url)
    const upstream = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    req.pipe(upstream)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

/** The CLI against `url` with `apiKey`. */
const sandstorm = (url: string, apiKey: string, args: string[]): Promise<Ran> => runCli(args, { SANDSTORM_URL: url, SANDSTORM_API_KEY: apiKey })

test('no command prints a control character that a server, an agent or a guest sent', async () => {
  const fake = await startFakeApi()
  const hostileApi = await startHostileServer(fake)
  try {
    const run = (args: string[]): Promise<Ran> => sandstorm(hostileApi.url, fake.apiKey, args)
    const cases: Array<[args: string[], shows: RegExp]> = [
      [['ls'], /^sandstorm: pwn\\x1b\]0;owned\\x07/m],
      [['agents'], /pwn\\x1b\]0;owned.*zone=pwn\\x1b/],
      [['logs'], /sh -c pwn\\x1b\]0;owned\\x07\\x1b\[2J\\x0dgood\\x9b31m\\x7f\\x0asecond line$/m],
      [['rm', 'sb-1', 'sb-\x1b[2'], /^sandstorm: sb-1: pwn\\x1b.*\nsandstorm: sb-\\x1b\[2: pwn\\x1b/m],
      [['snapshot', 'rm', 'snap-1', 'snap-2'], /^sandstorm: snap-1: pwn\\x1b.*\nsandstorm: snap-2: pwn\\x1b/m],
      [['run', '--no-stdin', '--', 'echo', 'hi'], /could not destroy sandbox sb-\d+: pwn\\x1b/],
      [['template', 'build', 't', '--image', 'alpine'], /^pwn\\x1b.*\n==> step 1: pwn\\x1b.*\nsandstorm: pwn\\x1b/m],
    ]
    // Every command is run and judged, so that a failure names all the commands that print raw text.
    const wrong: string[] = []
    for (const [args, shows] of cases) {
      const ran = await run(args)
      const printed = ran.stdout.replace('out\x1b[2J\n', '') + ran.stderr
      if (obeyed.test(printed) || !shows.test(printed)) wrong.push(`${args.join(' ')}: ${JSON.stringify(printed)}`)
    }
    assert.deepEqual(wrong, [])
    // A build's step output to a pipe is the step's bytes, as `docker build` gives them.
    assert.equal((await run(['template', 'build', 't', '--image', 'alpine'])).stdout, 'out\x1b[2J\n')
  } finally {
    await hostileApi.close()
    await fake.close()
  }
})
