import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer as createHttpServer } from 'node:http'
import { createServer as createTcpServer, type Socket, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { test } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { startFakeApi, type FakeApi } from './fake-api.fixture.js'
import {
  AbortError,
  AuthenticationError,
  CommandExitError,
  ConflictError,
  ConnectionError,
  FileTooLargeError,
  InvalidArgumentError,
  NotFoundError,
  Sandbox,
  TimeoutError,
  listTemplates,
} from './index.js'

async function withFake(fn: (fake: FakeApi, conn: { apiUrl: string; apiKey: string }) => Promise<void>, maxFileBytes?: number): Promise<void> {
  const fake = await startFakeApi({ maxFileBytes })
  try {
    await fn(fake, { apiUrl: fake.url, apiKey: fake.apiKey })
  } finally {
    await fake.close()
  }
}

test('create, getInfo, list by label, setTimeout, isRunning, kill', () =>
  withFake(async (fake, conn) => {
    const sbx = await Sandbox.create('debian', { ...conn, memoryMiB: 256, timeoutMs: 600_000, labels: { team: 'a' } })
    await Sandbox.create({ ...conn, labels: { team: 'b' } })
    const info = await sbx.getInfo()
    assert.equal(info.id, sbx.sandboxId)
    assert.equal(info.memoryMiB, 256)
    assert.deepEqual((await Sandbox.list({ ...conn, labels: { team: 'a' } })).map((s) => s.id), [sbx.sandboxId])
    assert.equal((await Sandbox.list({ ...conn, state: 'running' })).length, 2)
    assert.ok(fake.requests.includes('GET /v1/sandboxes?label=team%3Da'))
    const before = Date.parse(info.expiresAt)
    await sbx.setTimeout(3_600_000)
    assert.ok(Date.parse((await sbx.getInfo()).expiresAt) > before)
    assert.equal(await sbx.isRunning(), true)
    assert.equal(await sbx.kill(), true)
    assert.equal(await sbx.isRunning(), false)
    assert.equal(await Sandbox.kill(sbx.sandboxId, conn), false)
    await assert.rejects(Sandbox.connect(sbx.sandboxId, conn), NotFoundError)
    assert.deepEqual((await listTemplates(conn)).map((t) => t.name), ['debian'])
  }))

test('create sends the runtime; the instance says how a golden create started', () =>
  withFake(async (_fake, conn) => {
    const vm = await Sandbox.create('debian', { ...conn, runtime: 'qemu' })
    assert.equal((await vm.getInfo()).runtime, 'qemu')
    assert.deepEqual(vm.start, {})
    assert.deepEqual((await Sandbox.create('golden-py', conn)).start, { source: 'golden', golden: { version: 2, snapshotId: 'snap-0000000000000001' } })
    assert.deepEqual((await Sandbox.create('golden-py', { ...conn, memoryMiB: 1024 })).start, { source: 'cold', sourceReason: 'another config' })
  }))

test('server errors arrive as classes with the server message', () =>
  withFake(async (_fake, conn) => {
    await assert.rejects(Sandbox.create('nope', conn), (err: unknown) => err instanceof NotFoundError && /template such as "debian"/.test(err.message))
    await assert.rejects(Sandbox.create('debian', { ...conn, memoryMiB: 1 }), (err: unknown) => err instanceof InvalidArgumentError && /at least 16, got 1/.test(err.message))
    await assert.rejects(Sandbox.list({ ...conn, apiKey: 'wrong' }), AuthenticationError)
  }))

test('commands.run: shell string, argv, envs, streamed output', () =>
  withFake(async (fake, conn) => {
    const sbx = await Sandbox.create('debian', conn)
    const seen: string[] = []
    const r = await sbx.commands.run('echo hello world', { onStdout: (d) => seen.push(d), envs: { A: '1' }, cwd: '/tmp', user: 'nobody' })
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'hello world\n')
    assert.equal(seen.join(''), 'hello world\n')
    assert.equal(typeof r.pid, 'number')
    assert.deepEqual(fake.execBodies[0], { cmd: 'echo hello world', env: { A: '1' }, cwd: '/tmp', user: 'nobody' })
    const a = await sbx.commands.run(['env', 'x y'])
    assert.equal(a.stdout, 'env x y')
    assert.deepEqual(fake.execBodies[1], { argv: ['env', 'x y'] })
    const c = await sbx.commands.run('cat', { stdin: 'from stdin' })
    assert.equal(c.stdout, 'from stdin')
  }))

test('commands.run decodes characters split across output events', () =>
  withFake(async (_fake, conn) => {
    const sbx = await Sandbox.create('debian', conn)
    const pieces: string[] = []
    const r = await sbx.commands.run('utf8split', { onStdout: (d) => pieces.push(d) })
    assert.equal(r.stdout, 'é€\n')
    assert.ok(pieces.every((p) => !p.includes('\uFFFD')), JSON.stringify(pieces))
  }))

test('a non-zero exit throws CommandExitError with the result', () =>
  withFake(async (_fake, conn) => {
    const sbx = await Sandbox.create('debian', conn)
    const stderr: string[] = []
    await assert.rejects(sbx.commands.run('fail', { onStderr: (d) => stderr.push(d) }), (err: unknown) => {
      assert.ok(err instanceof CommandExitError)
      assert.equal(err.result.exitCode, 3)
      assert.equal(err.result.stdout, 'partial\n')
      assert.equal(err.result.stderr, 'boom\n')
      return true
    })
    assert.equal(stderr.join(''), 'boom\n')
  }))

test("a command's own timeout throws TimeoutError with the result", () =>
  withFake(async (fake, conn) => {
    const sbx = await Sandbox.create('debian', conn)
    await assert.rejects(sbx.commands.run('hang', { timeoutMs: 50 }), (err: unknown) => {
      assert.ok(err instanceof TimeoutError)
      assert.equal(err.result?.timedOut, true)
      return true
    })
    assert.equal(fake.execBodies[0]!.timeoutMs, 50)
  }))

test('aborting a foreground run kills the process and rejects with AbortError', () =>
  withFake(async (fake, conn) => {
    const sbx = await Sandbox.create('debian', conn)
    const ac = new AbortController()
    const killed = fake.nextSignal()
    const run = sbx.commands.run('sleep', { signal: ac.signal, onStdout: () => undefined })
    // Abort once the process has started: its pid is listed.
    for (;;) {
      const list = await sbx.commands.list()
      if (list.length) break
    }
    ac.abort()
    await assert.rejects(run, AbortError)
    assert.deepEqual((await killed).signal, 'SIGKILL')
  }))

test('background commands: wait, stdin, kill, connect, list', () =>
  withFake(async (_fake, conn) => {
    const sbx = await Sandbox.create('debian', conn)
    const cat = await sbx.commands.run('cat', { background: true, keepStdin: true })
    await cat.sendStdin('abc')
    await cat.sendStdin(new TextEncoder().encode('déf'))
    await cat.closeStdin()
    const r = await cat.wait()
    assert.equal(r.stdout, 'abcdéf')
    assert.equal(cat.stdout, 'abcdéf')

    const sleeper = await sbx.commands.run(['sleep'], { background: true })
    assert.equal(await sleeper.kill(), true)
    await assert.rejects(sleeper.wait(), (err: unknown) => err instanceof CommandExitError && err.result.exitCode === 137)

    const echo = await sbx.commands.run('echo again', { background: true })
    await echo.wait()
    const seen: string[] = []
    const attached = await sbx.commands.connect(echo.pid, { onStdout: (d) => seen.push(d) })
    await attached.wait()
    assert.equal(seen.join(''), 'again\n')

    const list = await sbx.commands.list()
    assert.deepEqual(list.map((p) => p.running), [false, false, false])
    assert.equal(await sbx.commands.kill(99999), false)
    await assert.rejects(sbx.commands.sendStdin(echo.pid, 'x'), ConflictError)
  }))

test('a background handle can stop following without killing', () =>
  withFake(async (_fake, conn) => {
    const sbx = await Sandbox.create('debian', conn)
    const h = await sbx.commands.run('sleep', { background: true, onStdout: () => undefined })
    const waiting = h.wait()
    h.disconnect()
    await assert.rejects(waiting, AbortError)
    assert.equal((await sbx.commands.list())[0]!.running, true)
    await h.kill()
  }))

test('files: write and read text, bytes, streams; list, stat, exists, mkdir, rename, remove', () =>
  withFake(async (fake, conn) => {
    const sbx = await Sandbox.create('debian', conn)
    const info = await sbx.files.write('/tmp/a.txt', 'hi')
    assert.deepEqual(info, { name: 'a.txt', path: '/tmp/a.txt', type: 'file' })
    assert.equal(await sbx.files.read('/tmp/a.txt'), 'hi')
    await sbx.files.write('/tmp/b.bin', new Uint8Array([0, 255, 1]))
    assert.deepEqual([...(await sbx.files.read('/tmp/b.bin', { format: 'bytes' }))], [0, 255, 1])
    await sbx.files.write('/tmp/c', new Uint8Array([9]).buffer)
    await sbx.files.write('/tmp/d', new Blob(['blob']))
    assert.equal(await sbx.files.read('/tmp/d'), 'blob')
    const written = await sbx.files.write([
      { path: '/tmp/e', data: 'e' },
      { path: '/tmp/f', data: 'f' },
    ])
    assert.deepEqual(written.map((w) => w.path), ['/tmp/e', '/tmp/f'])
    assert.deepEqual((await sbx.files.list('/tmp')).map((e) => e.name).sort(), ['a.txt', 'b.bin', 'c', 'd', 'e', 'f'])
    assert.equal((await sbx.files.getInfo('/tmp/a.txt')).size, 2)
    assert.equal(await sbx.files.exists('/tmp/a.txt'), true)
    assert.equal(await sbx.files.exists('/nope'), false)
    await sbx.files.makeDir('/work')
    assert.equal((await sbx.files.getInfo('/work')).type, 'dir')
    await sbx.files.rename('/tmp/a.txt', '/tmp/z.txt')
    assert.equal(fake.files.get('/tmp/z.txt')?.toString(), 'hi')
    await sbx.files.remove('/tmp/z.txt')
    await assert.rejects(sbx.files.read('/tmp/z.txt'), NotFoundError)
  }))

test('files: large uploads and downloads are streamed both ways', () =>
  withFake(async (fake, conn) => {
    const sbx = await Sandbox.create('debian', conn)
    const chunk = new Uint8Array(1 << 20).fill(7)
    let pulled = 0
    async function* source(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 24; i++) {
        pulled++
        yield chunk
      }
    }
    await sbx.files.write('/big', source())
    assert.equal(pulled, 24)
    assert.equal(fake.files.get('/big')?.length, 24 << 20)
    const stream = await sbx.files.read('/big', { format: 'stream' })
    let total = 0
    for await (const c of stream as unknown as AsyncIterable<Uint8Array>) total += c.length
    assert.equal(total, 24 << 20)

    let i = 0
    const rs = new ReadableStream<Uint8Array>({
      pull(c) {
        if (i++ < 3) c.enqueue(chunk)
        else c.close()
      },
    })
    await sbx.files.write('/rs', rs)
    assert.equal(fake.files.get('/rs')?.length, 3 << 20)

    // A stream read only in part is cancelled, which closes its connection.
    const partial = await sbx.files.read('/big', { format: 'stream' })
    const reader = partial.getReader()
    await reader.read()
    await reader.cancel()
  }))

test('files: a streamed upload does not keep what it sent in memory', () =>
  withFake(async (fake, conn) => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const sbx = await Sandbox.create('debian', conn)
    gc()
    const before = process.memoryUsage().arrayBuffers
    async function* fresh(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 256; i++) yield new Uint8Array(1 << 20).fill(i)
    }
    await sbx.files.write('/dev/null', fresh())
    assert.equal(fake.discardedBytes, 256 << 20)
    gc()
    gc()
    const kept = process.memoryUsage().arrayBuffers - before
    // Kept chunks would be all 256 MiB; what stays below a third of it is noise of other buffers.
    assert.ok(kept < 80 << 20, `kept ${kept} bytes after a 256 MiB upload`)
  }))

test('files: past the server limit a write throws FileTooLargeError', () =>
  withFake(async (_fake, conn) => {
    const sbx = await Sandbox.create('debian', conn)
    await assert.rejects(sbx.files.write('/x', new Uint8Array(2048)), FileTooLargeError)
  }, 1024))

test('the API key comes from the option, the environment, or the data dir file', () =>
  withFake(async (fake) => {
    const dir = mkdtempSync(join(tmpdir(), 'sandstorm-key-'))
    const saved = { ...process.env }
    try {
      process.env.SANDSTORM_URL = fake.url
      delete process.env.SANDSTORM_API_KEY
      process.env.SANDSTORM_DATA_DIR = dir
      await assert.rejects(Sandbox.list(), (err: unknown) => err instanceof AuthenticationError && /SANDSTORM_API_KEY/.test(err.message) && err.message.includes(join(dir, 'api-key')))
      writeFileSync(join(dir, 'api-key'), `${fake.apiKey}\n`)
      assert.deepEqual(await Sandbox.list(), [])
      process.env.SANDSTORM_API_KEY = 'from-env-wrong'
      await assert.rejects(Sandbox.list(), AuthenticationError)
      assert.deepEqual(await Sandbox.list({ apiKey: fake.apiKey }), [])
    } finally {
      process.env = saved
      rmSync(dir, { recursive: true, force: true })
    }
  }))

test('an unreachable server is a ConnectionError that says how to start one', async () => {
  const server = createHttpServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  await assert.rejects(Sandbox.list({ apiUrl: `http://127.0.0.1:${port}`, apiKey: 'k' }), (err: unknown) => {
    assert.ok(err instanceof ConnectionError)
    assert.match(err.message, /ECONNREFUSED/)
    assert.match(err.message, /sandstorm up/)
    assert.equal(err.retryable, true)
    return true
  })
})

test('requestTimeoutMs ends a request that gets no answer; a caller abort is an AbortError', async () => {
  const sockets = new Set<Socket>()
  const silent = createTcpServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  silent.listen(0, '127.0.0.1')
  await once(silent, 'listening')
  const apiUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`
  try {
    await assert.rejects(Sandbox.list({ apiUrl, apiKey: 'k', requestTimeoutMs: 20 }), (err: unknown) => err instanceof TimeoutError && /requestTimeoutMs/.test(err.message))
    const ac = new AbortController()
    const call = Sandbox.list({ apiUrl, apiKey: 'k', requestTimeoutMs: 0, signal: ac.signal })
    ac.abort()
    await assert.rejects(call, AbortError)
  } finally {
    for (const s of sockets) s.destroy()
    silent.close()
    await once(silent, 'close')
  }
})
