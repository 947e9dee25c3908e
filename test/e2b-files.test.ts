/** The unmodified `e2b` SDK against a real Sandstorm: the files API (envd's filesystem service and /files). */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, test } from 'node:test'
import { FileNotFoundError, FileType, FilesystemEventType } from 'e2b'
import type { FilesystemEvent } from 'e2b'
import { e2bSuite } from './helpers/e2b-env.js'
import { skipReason } from './helpers/stack.js'

const skip = skipReason()

describe('e2b SDK: files', { skip: skip ?? false }, () => {
  const suite = e2bSuite({ sandbox: true })

  test('write and read text, as the default user, with parents made', async () => {
    const info = await suite.sbx.files.write('notes/today.txt', 'hello files')
    assert.equal(info.path, '/home/user/notes/today.txt')
    assert.equal(info.name, 'today.txt')
    assert.equal(await suite.sbx.files.read('/home/user/notes/today.txt'), 'hello files')
    // The user owns what was written for them, so their commands can change it.
    await suite.sbx.commands.run('echo more >> /home/user/notes/today.txt')
    assert.equal(await suite.sbx.files.read('notes/today.txt'), 'hello filesmore\n')
    const entry = await suite.sbx.files.getInfo('notes/today.txt')
    assert.equal(entry.owner, 'user')
    assert.equal(entry.type, FileType.FILE)
    assert.equal(entry.size, 'hello filesmore\n'.length)
  })

  test('binary and large files, bytes and streams', async () => {
    const binary = new Uint8Array(randomBytes(4096))
    await suite.sbx.files.write('/tmp/bin.dat', binary.buffer as ArrayBuffer)
    assert.deepEqual(await suite.sbx.files.read('/tmp/bin.dat', { format: 'bytes' }), binary)

    const large = randomBytes(12 * 1024 * 1024)
    await suite.sbx.files.write('/tmp/large.dat', new Blob([large]))
    const back = Buffer.from(await suite.sbx.files.read('/tmp/large.dat', { format: 'bytes' }))
    assert.equal(back.length, large.length)
    assert.ok(back.equals(large), 'large file round-trips byte for byte')

    const streamed = await suite.sbx.files.read('/tmp/bin.dat', { format: 'stream' })
    const chunks: Uint8Array[] = []
    for await (const chunk of streamed) chunks.push(chunk)
    assert.ok(Buffer.concat(chunks).equals(Buffer.from(binary)))

    await suite.sbx.files.write('/tmp/gz.txt', 'compressed on the way', { gzip: true })
    assert.equal(await suite.sbx.files.read('/tmp/gz.txt', { gzip: true }), 'compressed on the way')
    await suite.sbx.files.write('/tmp/empty.txt', '')
    assert.equal(await suite.sbx.files.read('/tmp/empty.txt'), '')
  })

  test('multi-file write', async () => {
    const infos = await suite.sbx.files.write([
      { path: '/home/user/multi/a.txt', data: 'A' },
      { path: '/home/user/multi/sub/b.txt', data: 'B' },
    ])
    assert.deepEqual(infos.map((i) => i.path).sort(), ['/home/user/multi/a.txt', '/home/user/multi/sub/b.txt'])
    assert.equal(await suite.sbx.files.read('/home/user/multi/sub/b.txt'), 'B')
  })

  test('list with depth, makeDir, rename, remove, exists', async () => {
    assert.equal(await suite.sbx.files.makeDir('/home/user/tree/inner'), true)
    assert.equal(await suite.sbx.files.makeDir('/home/user/tree/inner'), false, 'an existing dir is not made again')
    await suite.sbx.files.write('/home/user/tree/inner/f.txt', 'f')
    await suite.sbx.files.write('/home/user/tree/top.txt', 't')

    const shallow = await suite.sbx.files.list('/home/user/tree')
    assert.deepEqual(shallow.map((e) => [e.name, e.type]), [['inner', FileType.DIR], ['top.txt', FileType.FILE]])
    const deep = await suite.sbx.files.list('/home/user/tree', { depth: 2 })
    assert.deepEqual(deep.map((e) => e.path), ['/home/user/tree/inner', '/home/user/tree/inner/f.txt', '/home/user/tree/top.txt'])

    const moved = await suite.sbx.files.rename('/home/user/tree/top.txt', '/home/user/tree/inner/moved.txt')
    assert.equal(moved.path, '/home/user/tree/inner/moved.txt')
    assert.equal(await suite.sbx.files.exists('/home/user/tree/top.txt'), false)
    assert.equal(await suite.sbx.files.exists('/home/user/tree/inner/moved.txt'), true)

    await suite.sbx.files.remove('/home/user/tree')
    assert.equal(await suite.sbx.files.exists('/home/user/tree'), false)
  })

  test('errors: missing files are FileNotFoundError', async () => {
    await assert.rejects(suite.sbx.files.read('/no/such/file'), FileNotFoundError)
    await assert.rejects(suite.sbx.files.getInfo('/no/such/file'), FileNotFoundError)
    await assert.rejects(suite.sbx.files.list('/no/such/dir'), FileNotFoundError)
    // Removing what is not there succeeds, as envd's RemoveAll (e2b-files-parity.test.ts).
    await assert.rejects(suite.sbx.files.rename('/no/such/file', '/tmp/x'), FileNotFoundError)
    await assert.rejects(suite.sbx.files.write('/root/secret.txt', 'x'), /permission denied/i, 'the default user cannot write into /root')
  })

  test('watchDir reports creates, writes and removes, recursively', async () => {
    await suite.sbx.files.makeDir('/home/user/watched/deep')
    const events: FilesystemEvent[] = []
    let wake: (() => void) | undefined
    const handle = await suite.sbx.files.watchDir(
      '/home/user/watched',
      (event) => {
        events.push(event)
        wake?.()
      },
      { recursive: true },
    )
    const until = async (pred: () => boolean): Promise<void> => {
      while (!pred()) await new Promise<void>((resolve) => (wake = resolve))
    }
    try {
      await suite.sbx.files.write('/home/user/watched/new.txt', 'x')
      await suite.sbx.files.write('/home/user/watched/deep/inner.txt', 'y')
      await suite.sbx.files.remove('/home/user/watched/new.txt')
      await until(() => events.some((e) => e.name === 'new.txt' && e.type === FilesystemEventType.REMOVE))
      assert.ok(events.some((e) => e.name === 'new.txt' && e.type === FilesystemEventType.CREATE))
      assert.ok(events.some((e) => e.name === 'new.txt' && e.type === FilesystemEventType.WRITE))
      await until(() => events.some((e) => e.name === 'deep/inner.txt'))
    } finally {
      await handle.stop()
    }
    await assert.rejects(suite.sbx.files.watchDir('/no/such/dir', () => undefined), FileNotFoundError)
  })
})
