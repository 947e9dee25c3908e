import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import type { Digest } from '../contracts.js'
import { createImageLayerStore } from './layer-store.js'
import { failingStreamOf, gzip, streamOf, tarBytes } from './tar.fixture.js'

let work: string
let count = 0

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'image-layer-store-test-'))
})
after(async () => {
  await rm(work, { recursive: true, force: true })
})

function digestOf(bytes: Buffer | string): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

function storeDir(): string {
  return join(work, `store-${count++}`)
}

const gzipType = 'application/vnd.oci.image.layer.v1.tar+gzip'

describe('createImageLayerStore', () => {
  it('stores a layer once, for concurrent ensures of one id, and finds it again', async () => {
    const dir = storeDir()
    const store = createImageLayerStore({ dir })
    const blob = gzip(await tarBytes([{ name: 'etc/os-release', content: 'ID=test\n' }]))
    const id = digestOf(blob)
    let opens = 0
    const open = async (): Promise<Readable> => {
      opens++
      return streamOf(blob, 64)
    }
    const [a, b] = await Promise.all([store.ensure(id, gzipType, open), store.ensure(id, gzipType, open)])
    assert.equal(opens, 1)
    assert.deepEqual(a, b)
    assert.deepEqual(a, { id, dir: join(dir, id.slice('sha256:'.length)), sizeBytes: 8 })
    assert.equal(await readFile(join(a.dir, 'etc/os-release'), 'utf8'), 'ID=test\n')
    assert.equal((await stat(a.dir)).mode & 0o777, 0o755, "a layer's root is the sandbox's / where no upper layer has one")
    await store.ensure(id, gzipType, open)
    assert.equal(opens, 1, 'a stored layer is not unpacked again')
    // Another store over the same directory (a restart) finds it by its record.
    assert.deepEqual(await createImageLayerStore({ dir }).get(id), a)
    const record = JSON.parse(await readFile(join(dir, `${id.slice(7)}.json`), 'utf8')) as Record<string, unknown>
    assert.equal(record.id, id)
    assert.equal(record.sizeBytes, 8)
  })

  it('keeps nothing of a stream that errors at its end, nor of a layer past a limit', async () => {
    const dir = storeDir()
    const store = createImageLayerStore({ dir })
    const blob = gzip(await tarBytes([{ name: 'f', content: Buffer.alloc(10_000, 1) }]))
    const id = digestOf('a layer whose digest does not match')
    await assert.rejects(
      store.ensure(id, gzipType, async () => failingStreamOf(blob, 'layer digest mismatch')),
      /layer digest mismatch/,
    )
    assert.equal(await store.get(id), null)
    assert.deepEqual(await readdir(dir), [])
    await assert.rejects(
      store.ensure(id, gzipType, async () => streamOf(blob), { maxLayerBytes: 1000 }),
      (error: unknown) => error instanceof SandstormError && error.code === 'resource_exhausted' && error.message.includes(`layer ${id} unpacks to more than 1000 bytes`),
    )
    await assert.rejects(store.ensure(id, gzipType, async () => Promise.reject(new Error('registry down'))), /registry down/)
    assert.deepEqual(await readdir(dir), [], 'no temp dir is left')
  })

  it('cancels an unpack only when every caller waiting for it cancelled, and removes its temp dir', async () => {
    const dir = storeDir()
    const store = createImageLayerStore({ dir })
    const head = (await tarBytes([{ name: 'f', content: Buffer.alloc(2048, 1) }])).subarray(0, 1024)
    const id = digestOf('stalled')
    let opened!: () => void
    const wasOpened = new Promise<void>((resolve) => (opened = resolve))
    let sent = false
    const stalled = new Readable({
      read() {
        if (sent) return // nothing more, never an end: only a cancel ends it
        sent = true
        this.push(head)
      },
    })
    const open = async (): Promise<Readable> => {
      opened()
      return stalled
    }
    const first = new AbortController()
    const second = new AbortController()
    const a = store.ensure(id, 'application/vnd.oci.image.layer.v1.tar', open, { signal: first.signal })
    const b = store.ensure(id, 'application/vnd.oci.image.layer.v1.tar', open, { signal: second.signal })
    await wasOpened
    first.abort()
    await assert.rejects(a, (error: unknown) => error instanceof SandstormError && error.code === 'canceled')
    assert.equal(stalled.destroyed, false, 'the other caller still waits for the unpack')
    second.abort()
    await assert.rejects(b, (error: unknown) => error instanceof SandstormError && error.code === 'canceled')
    // The shared unpack settles after its callers: wait for it through the store, which awaits it.
    const blob = await tarBytes([{ name: 'g', content: 'g' }])
    await store.ensure(id, 'tar', async () => streamOf(blob))
    assert.ok(stalled.destroyed)
    assert.deepEqual((await readdir(dir)).sort(), [id.slice(7), `${id.slice(7)}.json`])
  })

  it('creates a layer with a fill function, and keeps nothing when it throws', async () => {
    const dir = storeDir()
    const store = createImageLayerStore({ dir })
    const id = digestOf('copy step')
    await assert.rejects(
      store.create(id, async (tree) => {
        await writeFile(join(tree, 'half'), 'written')
        throw new Error('COPY failed')
      }),
      /COPY failed/,
    )
    assert.deepEqual(await readdir(dir), [])
    const layer = await store.create(id, async (tree) => {
      await mkdir(join(tree, 'app'))
      await writeFile(join(tree, 'app/main.js'), 'console.log(1)\n')
    })
    assert.equal(layer.sizeBytes, 'console.log(1)\n'.length)
    assert.equal(await readFile(join(layer.dir, 'app/main.js'), 'utf8'), 'console.log(1)\n')
    assert.deepEqual(await store.get(id), layer)
  })

  it('takes no more than the room beyond the host margin: refused (resource_exhausted) before the disk fills, keeping nothing', async () => {
    const dir = storeDir()
    const roomBytes = 64 * 1024
    const store = createImageLayerStore({ dir, roomOf: async () => roomBytes })
    const noRoom = (what: string, neededBytes: number) => (error: unknown) =>
      error instanceof SandstormError && error.code === 'resource_exhausted' && error.message.startsWith(`${what} failed: the host's disk is full: it needs at least ${neededBytes} bytes and ${roomBytes} bytes are free`)
    // Far under the layer's own limit, but four times the room.
    const big = gzip(await tarBytes([{ name: 'big', content: Buffer.alloc(256 * 1024, 1) }]))
    await assert.rejects(store.ensure(digestOf(big), gzipType, async () => streamOf(big)), noRoom(`unpacking layer ${digestOf(big)}`, 256 * 1024))
    // 20 files of 100 bytes: 2,000 bytes declared, 20 blocks of 4 KiB on the disk.
    const many = gzip(await tarBytes(Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, content: Buffer.alloc(100, 1) }))))
    await assert.rejects(store.ensure(digestOf(many), gzipType, async () => streamOf(many)), noRoom(`unpacking layer ${digestOf(many)}`, 17 * 4096))
    assert.deepEqual(await readdir(dir), [], 'no temp dir is left')
    // What fits is stored.
    const small = gzip(await tarBytes([{ name: 'small', content: Buffer.alloc(10_000, 1) }]))
    assert.equal((await store.ensure(digestOf(small), gzipType, async () => streamOf(small))).sizeBytes, 10_000)
    // A fill (COPY, a RUN's commit) is told the room; with none, nothing is opened or made.
    let given: number | undefined
    await store.create(digestOf('fill'), async (_tree, room) => void (given = room))
    assert.equal(given, roomBytes)
    const full = createImageLayerStore({ dir: storeDir(), roomOf: async () => -1024 })
    let opens = 0
    await assert.rejects(full.ensure(digestOf(big), gzipType, async () => (opens++, streamOf(big))), (error: unknown) => error instanceof SandstormError && error.code === 'resource_exhausted' && /0 bytes are free/.test(error.message))
    await assert.rejects(full.create(digestOf('fill 2'), async () => assert.fail('no fill without room')), (error: unknown) => error instanceof SandstormError && error.code === 'resource_exhausted')
    assert.equal(opens, 0)
  })

  it("counts the host's inodes: a layer of empty files (no byte of room) is refused past the free inodes, keeping nothing", async () => {
    const dir = storeDir()
    const store = createImageLayerStore({ dir, inodesOf: async () => 10 })
    // 20 empty files take no block, but 21 inodes with the directory they are in.
    const empties = gzip(await tarBytes([{ name: 'd/', type: 'directory' }, ...Array.from({ length: 20 }, (_, i) => ({ name: `d/e${i}`, content: Buffer.alloc(0) }))]))
    await assert.rejects(
      store.ensure(digestOf(empties), gzipType, async () => streamOf(empties)),
      (error: unknown) => error instanceof SandstormError && error.code === 'resource_exhausted' && /out of inodes: it needs at least 11 files and 10 are free/.test(error.message),
    )
    assert.deepEqual(await readdir(dir), [], 'no temp dir is left')
    // A directory the tar only implies (its entries name none) takes an inode too: 3 files under
    // p<i>/a/b/c/ make 15.
    const implied = gzip(await tarBytes(Array.from({ length: 3 }, (_, i) => ({ name: `p${i}/a/b/c/f`, content: Buffer.alloc(0) }))))
    await assert.rejects(
      store.ensure(digestOf(implied), gzipType, async () => streamOf(implied)),
      (error: unknown) => error instanceof SandstormError && error.code === 'resource_exhausted' && /out of inodes: it needs at least 11 files and 10 are free/.test(error.message),
    )
    // Hardlinks make no inode: a file and 15 links to it fit in 10.
    const linked = gzip(await tarBytes([{ name: 'f', content: Buffer.from('x') }, ...Array.from({ length: 15 }, (_, i) => ({ name: `l${i}`, type: 'link' as const, linkname: 'f' }))]))
    assert.equal((await store.ensure(digestOf(linked), gzipType, async () => streamOf(linked))).sizeBytes, 1)
    const none = createImageLayerStore({ dir: storeDir(), inodesOf: async () => 0 })
    let opens = 0
    await assert.rejects(none.ensure(digestOf(empties), gzipType, async () => (opens++, streamOf(empties))), (error: unknown) => error instanceof SandstormError && error.code === 'resource_exhausted' && /out of inodes: 0 are free/.test(error.message))
    assert.equal(opens, 0)
  })

  it('sweeps what is not kept, without following symlinks, and crash leftovers at open', async () => {
    const dir = storeDir()
    const store = createImageLayerStore({ dir })
    const outside = join(work, `outside-${count++}`)
    await mkdir(outside)
    await writeFile(join(outside, 'precious'), 'keep me')
    const ids: Digest[] = []
    for (const name of ['a', 'b', 'c']) {
      const id = digestOf(name)
      ids.push(id)
      await store.create(id, async (tree) => {
        await writeFile(join(tree, name), name)
        await symlink(outside, join(tree, 'link'))
      })
    }
    const removed = await store.sweep(new Set([ids[1]!]))
    assert.deepEqual(removed.sort(), [ids[0], ids[2]].sort())
    assert.equal(await store.get(ids[0]!), null)
    assert.notEqual(await store.get(ids[1]!), null)
    assert.equal(await readFile(join(outside, 'precious'), 'utf8'), 'keep me')

    // A tree without its record, a record without its tree and a temp dir: what a crash leaves.
    await mkdir(join(dir, 'd'.repeat(64)))
    await writeFile(join(dir, `${'e'.repeat(64)}.json`), '{}')
    await mkdir(join(dir, '.tmp-0123'))
    await createImageLayerStore({ dir }).get(ids[1]!)
    assert.deepEqual((await readdir(dir)).sort(), [ids[1]!.slice(7), `${ids[1]!.slice(7)}.json`].sort())
    await assert.doesNotReject(lstat(join(outside, 'precious')))
  })

  it('refuses an id that is not a sha256 digest', async () => {
    const store = createImageLayerStore({ dir: storeDir() })
    await assert.rejects(
      () => store.get('sha256:../../etc' as Digest),
      (error: unknown) => error instanceof SandstormError && error.code === 'invalid_argument',
    )
  })
})
