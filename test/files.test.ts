/**
 * Files end to end: SDK -> HTTP server -> local agent -> the sandbox's busybox, started by its init.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { ConflictError, InvalidArgumentError, NotFoundError, Sandbox, SandstormSdkError } from '@sandstorm/sdk'
import { skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? false

const chunkBytes = 1024 * 1024

/** Chunk `i` of a deterministic stream: a fixed pseudo-random block stamped with its index. */
function makeChunker() {
  const block = Buffer.alloc(chunkBytes)
  let seed = createHash('sha256').update('sandstorm').digest()
  for (let at = 0; at < chunkBytes; at += seed.length) {
    seed.copy(block, at)
    seed = createHash('sha256').update(seed).digest()
  }
  return (i: number): Buffer => {
    const chunk = Buffer.from(block)
    chunk.writeUInt32BE(i, 0)
    chunk.writeUInt32BE(i, chunkBytes - 4)
    return chunk
  }
}

describe('files end to end', { skip }, () => {
  let stack: Stack
  let sbx: Sandbox

  before(async () => {
    stack = await startStack()
    sbx = await Sandbox.create('debian', { ...stack.conn })
  })
  after(async () => {
    await stack?.close()
  })

  /** Status and error body of a raw request, for the cases where the status itself is the point. */
  async function raw(method: string, path: string, body?: BodyInit) {
    const res = await fetch(`${stack.conn.apiUrl}/v1/sandboxes/${sbx.sandboxId}${path}`, {
      method,
      headers: { authorization: `Bearer ${stack.conn.apiKey}` },
      body,
    })
    return { status: res.status, text: await res.text() }
  }

  it('writes and reads text and binary (all 256 byte values)', async () => {
    await sbx.files.write('/tmp/hello.txt', 'héllo wörld\n')
    assert.equal(await sbx.files.read('/tmp/hello.txt'), 'héllo wörld\n')
    const bytes = Uint8Array.from({ length: 512 }, (_, i) => i % 256)
    await sbx.files.write('/tmp/bytes.bin', bytes)
    assert.deepEqual(Buffer.from(await sbx.files.read('/tmp/bytes.bin', { format: 'bytes' })), Buffer.from(bytes))
    // The command inside sees the same bytes.
    const { stdout } = await sbx.commands.run('od -An -v -tx1 /tmp/bytes.bin | tr -d " \\n"')
    assert.equal(stdout, Buffer.from(bytes).toString('hex'))
    // An empty file is a file.
    await sbx.files.write('/tmp/empty', '')
    assert.equal(await sbx.files.read('/tmp/empty'), '')
    assert.equal((await sbx.files.getInfo('/tmp/empty')).size, 0)
  })

  it('streams a 120 MB file in and out, compared by sha256', async () => {
    const chunks = 120
    const chunkAt = makeChunker()
    const sent = createHash('sha256')
    async function* source() {
      for (let i = 0; i < chunks; i++) {
        const chunk = chunkAt(i)
        sent.update(chunk)
        yield chunk
      }
    }
    await sbx.files.write('/root/big.bin', source())
    assert.equal((await sbx.files.getInfo('/root/big.bin')).size, chunks * chunkBytes)

    const received = createHash('sha256')
    let size = 0
    const stream = await sbx.files.read('/root/big.bin', { format: 'stream' })
    for await (const chunk of stream) {
      received.update(chunk)
      size += chunk.byteLength
    }
    assert.equal(size, chunks * chunkBytes)
    assert.equal(received.digest('hex'), sent.digest('hex'))
    const inside = await sbx.commands.run('sha256sum /root/big.bin | cut -d" " -f1')
    const expected = createHash('sha256')
    for (let i = 0; i < chunks; i++) expected.update(chunkAt(i))
    assert.equal(inside.stdout.trim(), expected.digest('hex'))
    await sbx.files.remove('/root/big.bin')
  })

  it('lists entries, names with spaces and a newline included', async () => {
    await sbx.files.makeDir('/srv/list')
    await sbx.files.write('/srv/list/plain.txt', 'abc')
    await sbx.files.write('/srv/list/with space.txt', 'x')
    await sbx.files.write('/srv/list/new\nline', 'y')
    await sbx.files.write('/srv/list/.hidden', '')
    await sbx.files.makeDir('/srv/list/sub dir')
    await sbx.commands.run('ln -s plain.txt /srv/list/link')
    const entries = await sbx.files.list('/srv/list')
    const byName = new Map(entries.map((e) => [e.name, e]))
    assert.deepEqual([...byName.keys()].sort(), ['.hidden', 'link', 'new\nline', 'plain.txt', 'sub dir', 'with space.txt'])
    assert.equal(byName.get('plain.txt')?.type, 'file')
    assert.equal(byName.get('plain.txt')?.size, 3)
    assert.equal(byName.get('plain.txt')?.path, '/srv/list/plain.txt')
    assert.equal(byName.get('new\nline')?.path, '/srv/list/new\nline')
    assert.equal(byName.get('sub dir')?.type, 'dir')
    assert.equal(byName.get('link')?.type, 'symlink')
    assert.deepEqual(await sbx.files.list('/srv/list/sub dir'), [])
    await assert.rejects(sbx.files.list('/srv/none'), NotFoundError)
    await assert.rejects(sbx.files.list('/srv/list/plain.txt'), SandstormSdkError)
  })

  it('stats entries: type, size, mode, owner; exists', async () => {
    await sbx.files.write('/tmp/mode.txt', '12345')
    await sbx.commands.run('chmod 640 /tmp/mode.txt && chown 1000:1000 /tmp/mode.txt')
    const info = await sbx.files.getInfo('/tmp/mode.txt')
    assert.equal(info.type, 'file')
    assert.equal(info.size, 5)
    assert.equal(info.mode, 0o640)
    assert.equal(info.uid, 1000)
    assert.equal(info.gid, 1000)
    assert.equal(info.name, 'mode.txt')
    assert.equal(info.path, '/tmp/mode.txt')
    assert.ok(Math.abs(Date.parse(info.modifiedAt) - Date.now()) < 10 * 60_000, `modifiedAt ${info.modifiedAt} is not about now`)
    const dir = await sbx.files.getInfo('/tmp')
    assert.equal(dir.type, 'dir')
    assert.equal(dir.mode, 0o1777)
    assert.equal(await sbx.files.exists('/tmp/mode.txt'), true)
    assert.equal(await sbx.files.exists('/tmp/nothing-here'), false)
    await assert.rejects(sbx.files.getInfo('/tmp/nothing-here'), NotFoundError)
    // Overwriting keeps the owner and mode, and leaves no temporary file beside it.
    await sbx.files.write('/tmp/mode.txt', 'new content')
    const rewritten = await sbx.files.getInfo('/tmp/mode.txt')
    assert.deepEqual([rewritten.size, rewritten.mode, rewritten.uid, rewritten.gid], [11, 0o640, 1000, 1000])
    assert.equal(await sbx.files.read('/tmp/mode.txt'), 'new content')
    assert.deepEqual((await sbx.files.list('/tmp')).filter((e) => e.name.startsWith('.sandstorm')), [])
  })

  it('makes nested dirs, removes files, dirs and trees, and says why it cannot', async () => {
    await sbx.files.makeDir('/work/a/b/c')
    assert.equal((await sbx.files.getInfo('/work/a/b/c')).type, 'dir')
    await sbx.files.makeDir('/work/a/b/c') // again: already there is fine
    await sbx.files.write('/work/a/b/c/f.txt', 'f')

    await assert.rejects(sbx.files.remove('/work/a'), (e: unknown) => {
      assert.ok(e instanceof ConflictError, `expected ConflictError (409), got ${String(e)}`)
      assert.match(e.message, /not empty/)
      return true
    })
    await assert.rejects(sbx.files.remove('/work/missing'), NotFoundError)
    assert.equal((await raw('POST', '/fs/remove', JSON.stringify({ path: '/work/a' }))).status, 409)
    assert.equal((await raw('POST', '/fs/remove', JSON.stringify({ path: '/work/missing' }))).status, 404)

    await sbx.files.remove('/work/a/b/c/f.txt')
    assert.equal(await sbx.files.exists('/work/a/b/c/f.txt'), false)
    await sbx.files.remove('/work/a/b/c')
    assert.equal(await sbx.files.exists('/work/a/b/c'), false)
    await sbx.files.write('/work/a/b/deep/file', 'x')
    await sbx.files.remove('/work/a', { recursive: true })
    assert.equal(await sbx.files.exists('/work/a'), false)
    // A file where a directory should be.
    await sbx.files.write('/work/file', 'x')
    await assert.rejects(sbx.files.makeDir('/work/file'), (e: unknown) => e instanceof SandstormSdkError && e.code !== 'internal')
  })

  it('renames files and dirs', async () => {
    await sbx.files.write('/tmp/r/from.txt', 'moved')
    await sbx.files.rename('/tmp/r/from.txt', '/tmp/r/to.txt')
    assert.equal(await sbx.files.exists('/tmp/r/from.txt'), false)
    assert.equal(await sbx.files.read('/tmp/r/to.txt'), 'moved')
    await sbx.files.rename('/tmp/r', '/tmp/r2')
    assert.equal(await sbx.files.read('/tmp/r2/to.txt'), 'moved')
    await assert.rejects(sbx.files.rename('/tmp/none', '/tmp/other'), NotFoundError)
  })

  it('answers 400 for a relative path', async () => {
    await assert.rejects(sbx.files.read('tmp/hello.txt'), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(e)}`)
      assert.match(e.message, /absolute path/)
      return true
    })
    await assert.rejects(sbx.files.write('relative.txt', 'x'), InvalidArgumentError)
    await assert.rejects(sbx.files.list('.'), InvalidArgumentError)
    await assert.rejects(sbx.files.makeDir('a/b'), InvalidArgumentError)
    const r = await raw('PUT', '/files?path=relative.txt', 'x')
    assert.equal(r.status, 400)
    assert.match(r.text, /absolute path/)
  })

  it('answers a 4xx for a write whose parent is a file, and writes nothing', async () => {
    await sbx.files.write('/tmp/plainfile', 'x')
    const r = await raw('PUT', `/files?path=${encodeURIComponent('/tmp/plainfile/child.txt')}`, 'data')
    assert.ok(r.status >= 400 && r.status < 500, `expected a 4xx, got ${r.status}: ${r.text}`)
    const body = JSON.parse(r.text) as { code: string; message: string }
    assert.match(body.message, /plainfile/)
    assert.equal(await sbx.files.read('/tmp/plainfile'), 'x')
    // Writing over a directory fails the same way.
    const dir = await raw('PUT', `/files?path=${encodeURIComponent('/tmp')}`, 'data')
    assert.ok(dir.status >= 400 && dir.status < 500, `expected a 4xx, got ${dir.status}: ${dir.text}`)
  })

  it('takes paths with shell characters as they are', async () => {
    const path = "/tmp/odd $(touch pwned) ; `id` 'q' \"d\" * -n.txt"
    await sbx.files.write(path, 'odd')
    assert.equal(await sbx.files.read(path), 'odd')
    assert.equal((await sbx.files.getInfo(path)).name, "odd $(touch pwned) ; `id` 'q' \"d\" * -n.txt")
    await sbx.files.rename(path, '/tmp/-leading-dash')
    assert.equal(await sbx.files.read('/tmp/-leading-dash'), 'odd')
    await sbx.files.remove('/tmp/-leading-dash')
    for (const p of ['/pwned', '/root/pwned', '/tmp/pwned']) assert.equal(await sbx.files.exists(p), false)
  })

  it('answers 400 for reading a directory and 404 for a missing file', async () => {
    await assert.rejects(sbx.files.read('/etc'), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(e)}`)
      assert.match(e.message, /is a directory/)
      return true
    })
    await assert.rejects(sbx.files.read('/etc/no-such-file'), NotFoundError)
    await assert.rejects(sbx.files.read('/etc/no-such-file', { format: 'stream' }), NotFoundError)
  })

  it('writes several files at once', async () => {
    const written = await sbx.files.write([
      { path: '/multi/a.txt', data: 'A' },
      { path: '/multi/sub/b.bin', data: new Uint8Array([0, 1, 2, 255]) },
      { path: '/multi/c.txt', data: new Blob(['C']) },
    ])
    assert.deepEqual(
      written.map((w) => w.path),
      ['/multi/a.txt', '/multi/sub/b.bin', '/multi/c.txt'],
    )
    assert.equal(await sbx.files.read('/multi/a.txt'), 'A')
    assert.deepEqual([...(await sbx.files.read('/multi/sub/b.bin', { format: 'bytes' }))], [0, 1, 2, 255])
    assert.equal(await sbx.files.read('/multi/c.txt'), 'C')
  })

  it('writes files owned by root that a command can then use', async () => {
    await sbx.files.write('/tmp/script.sh', '#!/bin/sh\necho "script ran as $(id -u)"\n')
    await sbx.commands.run('chmod +x /tmp/script.sh')
    assert.equal((await sbx.commands.run('/tmp/script.sh')).stdout, 'script ran as 0\n')
  })
})
