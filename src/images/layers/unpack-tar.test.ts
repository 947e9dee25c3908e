import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import { decompressed } from './decompress.js'
import { failingStreamOf, gzip, streamOf, tarBytes, zstd, type FixtureEntry } from './tar.fixture.js'
import { deepestFirst, depthOf, unpackTar, type UnpackTarOptions } from './unpack-tar.js'

let work: string
let count = 0

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'unpack-tar-test-'))
})
after(async () => {
  await rm(work, { recursive: true, force: true })
})

/** A fresh empty directory for one unpack. */
async function freshDir(): Promise<string> {
  const dir = join(work, `layer-${count++}`)
  await mkdir(dir)
  return dir
}

async function unpack(entries: FixtureEntry[], options: Partial<UnpackTarOptions> = {}): Promise<{ dir: string; sizeBytes: number; entries: number }> {
  const dir = await freshDir()
  const result = await unpackTar(streamOf(await tarBytes(entries)), dir, { whiteouts: true, ...options })
  return { dir, ...result }
}

async function rejectsWith(promise: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof SandstormError, `expected a SandstormError, got ${String(error)}`)
    assert.equal(error.code, code, error.message)
    assert.match(error.message, pattern)
    return true
  })
}

function getXattr(path: string, name: string): string | null {
  try {
    return execFileSync('getfattr', ['-h', '--only-values', '-n', name, path], { stdio: ['ignore', 'pipe', 'ignore'] }).toString()
  } catch {
    return null
  }
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  )
}

describe('unpackTar', () => {
  it('keeps files, dirs, symlinks, hardlinks, owners, modes (setuid too) and times', async () => {
    const mtime = new Date(1_500_000_000_000)
    const { dir, sizeBytes, entries } = await unpack([
      { name: './', type: 'directory', mode: 0o1777 },
      { name: 'etc/', type: 'directory', mode: 0o755 },
      { name: 'etc/hostname', content: 'layer\n', mode: 0o644, uid: 1234, gid: 4321, mtime },
      { name: '/usr/bin/su', content: 'elf', mode: 0o4755 },
      { name: 'usr/bin/sg', content: 'elf', mode: 0o2755 },
      { name: 'ro/', type: 'directory', mode: 0o555, uid: 1234, gid: 1234, mtime },
      { name: 'ro/inside', content: 'written before ro/ became read-only' },
      { name: 'abs', type: 'symlink', linkname: '/etc/hostname', uid: 1234, gid: 1234 },
      { name: 'rel', type: 'symlink', linkname: '../outside/of/layer' },
      { name: 'etc/hard', type: 'link', linkname: 'etc/hostname' },
      { name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0 },
      { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3 },
      { name: 'run/fifo', type: 'fifo', mode: 0o620 },
      { name: 'a/../b', content: 'b' },
    ])
    assert.equal(entries, 14)
    assert.equal(sizeBytes, 'layer\n'.length + 3 + 3 + 'written before ro/ became read-only'.length + '/etc/hostname'.length + '../outside/of/layer'.length + 1)
    assert.notEqual((await stat(dir)).mode & 0o7777, 0o1777, 'the root entry leaves the root as it was')
    assert.equal(await readFile(join(dir, 'etc/hostname'), 'utf8'), 'layer\n')
    const host = await stat(join(dir, 'etc/hostname'))
    assert.deepEqual([host.uid, host.gid, host.mode & 0o7777, host.mtimeMs], [1234, 4321, 0o644, mtime.getTime()])
    assert.equal((await stat(join(dir, 'usr/bin/su'))).mode & 0o7777, 0o4755)
    assert.equal((await stat(join(dir, 'usr/bin/sg'))).mode & 0o7777, 0o2755)
    assert.equal((await stat(join(dir, 'usr'))).mode & 0o7777, 0o755, 'a dir the tar did not list is made 0755')
    const ro = await stat(join(dir, 'ro'))
    assert.deepEqual([ro.uid, ro.mode & 0o7777, ro.mtimeMs], [1234, 0o555, mtime.getTime()], 'a dir gets its mode and time after its contents')
    assert.equal(await readFile(join(dir, 'ro/inside'), 'utf8'), 'written before ro/ became read-only')
    assert.equal(await readlink(join(dir, 'abs')), '/etc/hostname')
    assert.equal((await lstat(join(dir, 'abs'))).uid, 1234)
    assert.equal(await readlink(join(dir, 'rel')), '../outside/of/layer')
    assert.equal((await stat(join(dir, 'etc/hard'))).ino, host.ino)
    assert.equal(await exists(join(dir, 'dev/sda')), false, 'block devices are dropped')
    assert.equal(await exists(join(dir, 'dev/null')), false, 'character devices are dropped')
    const fifo = await lstat(join(dir, 'run/fifo'))
    assert.ok(fifo.isFIFO())
    assert.equal(fifo.mode & 0o777, 0o620)
    assert.equal(await readFile(join(dir, 'b'), 'utf8'), 'b')
  })

  it('lets a later entry replace an earlier one without writing through a symlink', async () => {
    const outside = join(work, 'outside-target')
    await writeFile(outside, 'untouched')
    const { dir } = await unpack([
      { name: 'x', type: 'symlink', linkname: outside },
      { name: 'x', content: 'replaced' },
      { name: 'd/', type: 'directory' },
      { name: 'd/f', content: 'f' },
      { name: 'd', type: 'symlink', linkname: work },
    ])
    assert.equal(await readFile(outside, 'utf8'), 'untouched')
    assert.ok((await lstat(join(dir, 'x'))).isFile())
    assert.equal(await readFile(join(dir, 'x'), 'utf8'), 'replaced')
    assert.ok((await lstat(join(dir, 'd'))).isSymbolicLink(), 'a directory replaced by a symlink, its metadata not applied through it')
  })

  it('makes whiteouts and opaque dirs that overlayfs honours', async () => {
    const lower = await unpack([
      { name: 'keep', content: 'keep' },
      { name: 'gone', content: 'gone' },
      { name: 'opq/', type: 'directory' },
      { name: 'opq/old', content: 'old' },
    ])
    const upper = await unpack([
      { name: '.wh.gone' },
      { name: 'opq/', type: 'directory' },
      { name: 'opq/.wh..wh..opq' },
      { name: 'opq/new', content: 'new' },
      { name: '.wh..wh.plnk/', type: 'directory' },
    ])
    const whiteout = await lstat(join(upper.dir, 'gone'))
    assert.ok(whiteout.isCharacterDevice() && whiteout.rdev === 0)
    assert.equal(getXattr(join(upper.dir, 'opq'), 'trusted.overlay.opaque'), 'y')
    assert.equal(await exists(join(upper.dir, '.wh.gone')), false)
    const mnt = await freshDir()
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${upper.dir}:${lower.dir}`, mnt])
    try {
      assert.deepEqual((await readdir(mnt)).sort(), ['keep', 'opq'])
      assert.deepEqual(await readdir(join(mnt, 'opq')), ['new'])
    } finally {
      execFileSync('umount', [mnt])
    }
  })

  it('makes many whiteouts, and lets a later entry of the tar replace one', async () => {
    const names = Array.from({ length: 300 }, (_, i) => `w${i}`)
    const { dir } = await unpack([
      ...names.map((name) => ({ name: `d/.wh.${name}` })),
      { name: '.wh.file' },
      { name: 'file', content: 'back' },
      { name: '.wh.dir' },
      { name: 'dir/inside', content: 'inside' },
    ])
    for (const name of names) {
      const st = await lstat(join(dir, 'd', name))
      assert.ok(st.isCharacterDevice() && st.rdev === 0, name)
    }
    assert.equal(await readFile(join(dir, 'file'), 'utf8'), 'back')
    assert.equal(await readFile(join(dir, 'dir/inside'), 'utf8'), 'inside')
  })

  it('keeps .wh. names as plain files when whiteouts are off (a build context)', async () => {
    const { dir } = await unpack([{ name: '.wh.file', content: 'plain' }, { name: 'd/.wh..wh..opq' }], { whiteouts: false })
    assert.equal(await readFile(join(dir, '.wh.file'), 'utf8'), 'plain')
    assert.ok((await lstat(join(dir, 'd/.wh..wh..opq'))).isFile())
    assert.equal(getXattr(join(dir, 'd'), 'trusted.overlay.opaque'), null)
  })

  it('reads gzip and zstd layers, by media type and by their magic bytes', async () => {
    const tarred = await tarBytes([{ name: 'hello', content: 'compressed' }])
    const cases: [string, Buffer][] = [
      ['application/vnd.oci.image.layer.v1.tar+gzip', gzip(tarred)],
      ['application/vnd.docker.image.rootfs.diff.tar.gzip', gzip(tarred)],
      ['application/vnd.oci.image.layer.v1.tar+zstd', zstd(tarred)],
      ['application/vnd.oci.image.layer.v1.tar', gzip(tarred)],
      ['application/vnd.oci.image.layer.v1.tar', zstd(tarred)],
      ['application/vnd.oci.image.layer.v1.tar', tarred],
      ['unknown', zstd(tarred)],
    ]
    for (const [mediaType, bytes] of cases) {
      const dir = await freshDir()
      await unpackTar(await decompressed(streamOf(bytes, 100), mediaType), dir, { whiteouts: true })
      assert.equal(await readFile(join(dir, 'hello'), 'utf8'), 'compressed', mediaType)
    }
    const xz = streamOf(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00, 0x04]))
    await rejectsWith(decompressed(xz, 'application/vnd.oci.image.layer.v1.tar'), 'invalid_argument', /xz or bzip2/)
    assert.ok(xz.destroyed)
  })

  it('fails on a truncated zstd or gzip stream, and on input that errors at its end', async () => {
    const tarred = await tarBytes([{ name: 'big', content: Buffer.alloc(200_000, 7) }])
    const z = zstd(tarred)
    await rejectsWith(unpackTar(await decompressed(streamOf(z.subarray(0, z.length - 10)), 'x+zstd'), await freshDir(), { whiteouts: true }), 'invalid_argument', /zstd|tar/)
    const g = gzip(tarred)
    await rejectsWith(unpackTar(await decompressed(streamOf(g.subarray(0, g.length - 10)), 'x+gzip'), await freshDir(), { whiteouts: true }), 'invalid_argument', /not a valid tar/)
    // The whole tar arrives, then the source errors (its digest did not match): the unpack fails.
    await assert.rejects(unpackTar(await decompressed(failingStreamOf(gzip(tarred)), 'x+gzip'), await freshDir(), { whiteouts: true }), /digest mismatch/)
    await assert.rejects(unpackTar(await decompressed(failingStreamOf(z), 'x+zstd'), await freshDir(), { whiteouts: true }), /digest mismatch/)
    await assert.rejects(unpackTar(failingStreamOf(tarred), await freshDir(), { whiteouts: true }), /digest mismatch/)
  })

  it('refuses paths that leave the directory', async () => {
    for (const name of ['../x', 'a/../../x', '/../x', './../../x']) {
      const dir = await freshDir()
      await rejectsWith(unpackTar(streamOf(await tarBytes([{ name, content: 'x' }])), dir, { whiteouts: true }), 'invalid_argument', /leaves the layer/)
    }
    assert.equal(await exists(join(work, 'x')), false)
  })

  it('refuses an entry through a symlink, and writes nothing outside', async () => {
    const target = await freshDir()
    const entries: FixtureEntry[] = [
      { name: 'evil', type: 'symlink', linkname: target },
      { name: 'evil/passwd', content: 'root::0:0::/:/bin/sh\n' },
    ]
    await rejectsWith(unpack(entries), 'invalid_argument', /evil\/passwd.*symlink/)
    await rejectsWith(unpack([{ name: 'evil', type: 'symlink', linkname: '/etc' }, { name: 'evil/passwd', content: 'x' }]), 'invalid_argument', /symlink/)
    await rejectsWith(unpack([{ name: 'evil', type: 'symlink', linkname: target }, { name: 'evil/d/', type: 'directory' }]), 'invalid_argument', /symlink/)
    await rejectsWith(unpack([{ name: 'evil', type: 'symlink', linkname: target }, { name: 'evil/.wh.x' }]), 'invalid_argument', /symlink/)
    await rejectsWith(unpack([{ name: 'evil', type: 'symlink', linkname: target }, { name: 'evil/.wh..wh..opq' }]), 'invalid_argument', /symlink/)
    assert.deepEqual(await readdir(target), [])
    assert.equal(getXattr(target, 'trusted.overlay.opaque'), null)
  })

  it('refuses hardlinks to anything but an earlier entry', async () => {
    await rejectsWith(unpack([{ name: 'shadow', type: 'link', linkname: '/etc/shadow' }]), 'invalid_argument', /not a file of this tar/)
    await rejectsWith(unpack([{ name: 'x', type: 'link', linkname: '../x' }]), 'invalid_argument', /leaves the layer/)
    await rejectsWith(
      unpack([
        { name: 'evil', type: 'symlink', linkname: '/etc' },
        { name: 'shadow', type: 'link', linkname: 'evil/shadow' },
      ]),
      'invalid_argument',
      /not a file of this tar/,
    )
    await rejectsWith(unpack([{ name: 'd/', type: 'directory' }, { name: 'l', type: 'link', linkname: 'd' }]), 'invalid_argument', /not a file of this tar/)
    // A hardlink to a symlink links the symlink itself, never what it points to.
    const { dir } = await unpack([
      { name: 's', type: 'symlink', linkname: '/etc/shadow' },
      { name: 'l', type: 'link', linkname: 's' },
    ])
    assert.equal(await readlink(join(dir, 'l')), '/etc/shadow')
  })

  it('stops a tar of many long directory paths at the bytes of paths it may hold, whiteouts and implied parents counted', async () => {
    // 3 names of 200 bytes under each of 40 dirs: with their parents, ~1,200 bytes a dir, ~48 KB in all.
    const long = (i: number) => `d${i}/${'a'.repeat(200)}/${'b'.repeat(200)}/${'c'.repeat(200)}`
    const dirs = Array.from({ length: 40 }, (_, i): FixtureEntry => ({ name: `${long(i)}/`, type: 'directory' }))
    await rejectsWith(unpack(dirs, { maxHeldPathBytes: 32 * 1024, label: 'layer sha256:abc' }), 'resource_exhausted', /^layer sha256:abc holds more than 32768 bytes of directory and whiteout paths \(the limit, maxHeldPathBytes\)/)
    // Directories made only as the parents of files count too, as do whiteouts.
    const files = Array.from({ length: 40 }, (_, i): FixtureEntry => ({ name: `${long(i)}/f`, content: '' }))
    await rejectsWith(unpack(files, { maxHeldPathBytes: 32 * 1024 }), 'resource_exhausted', /maxHeldPathBytes/)
    const whiteouts = Array.from({ length: 100 }, (_, i): FixtureEntry => ({ name: `${'w'.repeat(200)}/.wh.${'x'.repeat(200)}${i}`, content: '' }))
    await rejectsWith(unpack(whiteouts, { maxHeldPathBytes: 32 * 1024 }), 'resource_exhausted', /maxHeldPathBytes/)
    // Under the bound they unpack; a directory removed (replaced by a file) gives its bytes back.
    const { dir } = await unpack(dirs.slice(0, 20), { maxHeldPathBytes: 32 * 1024 })
    assert.equal((await readdir(dir)).length, 20)
    const replaced = dirs.slice(0, 20).flatMap((d, i): FixtureEntry[] => [d, { name: `d${i}`, content: 'now a file' }])
    await unpack([...replaced, ...dirs.slice(20)], { maxHeldPathBytes: 32 * 1024 })
  })

  it('stops a tar that replaces directories over and over at the steps it may take to forget what lay below them', async () => {
    // 200 directories held, then each replaced by a file: each replacement scans what is held.
    const dirs = Array.from({ length: 200 }, (_, i): FixtureEntry => ({ name: `k${i}/`, type: 'directory' }))
    const replacing = Array.from({ length: 200 }, (_, i): FixtureEntry => ({ name: `k${i}`, content: 'a file now' }))
    await rejectsWith(unpack([...dirs, ...replacing], { maxForgetVisits: 10_000, label: 'layer sha256:abc' }), 'resource_exhausted', /^layer sha256:abc replaces directories more than its paths allow: .* more than 10000 steps \(the limit, maxForgetVisits\)/)
    // A few replacements are within it, and unpack as before.
    const { dir } = await unpack([...dirs, ...replacing.slice(0, 10)], { maxForgetVisits: 10_000 })
    assert.equal(await readFile(join(dir, 'k3'), 'utf8'), 'a file now')
  })

  it('applies directories\' metadata deepest first, by a depth counted once', () => {
    assert.deepEqual([depthOf(''), depthOf('a'), depthOf('a/b'), depthOf('a/b/c/d')], [0, 1, 2, 4])
    const dirs = new Map(['a', 'a/b/c', '', 'x/y', 'a/b', 'x'].map((p) => [p, { depth: depthOf(p) }]))
    const order = deepestFirst(dirs).map(([p]) => p)
    assert.deepEqual(order.map(depthOf), [3, 2, 2, 1, 1, 0])
    assert.equal(order[0], 'a/b/c')
    assert.ok(order.indexOf('a/b') < order.indexOf('a') && order.indexOf('x/y') < order.indexOf('x'))
  })

  it('stops a layer bomb at its header, and a tar of too many entries', async () => {
    await rejectsWith(
      unpack([{ name: 'small', content: Buffer.alloc(600) }, { name: 'big', content: Buffer.alloc(1000) }], { maxLayerBytes: 1024, label: 'layer sha256:abc' }),
      'resource_exhausted',
      /layer sha256:abc unpacks to more than 1024 bytes \(the limit/,
    )
    await rejectsWith(
      unpack(
        Array.from({ length: 11 }, (_, i) => ({ name: `f${i}`, content: '' })),
        { maxEntries: 10 },
      ),
      'resource_exhausted',
      /more than 10 entries/,
    )
  })

  it('fails on a truncated tar', async () => {
    const bytes = await tarBytes([{ name: 'f', content: Buffer.alloc(5000, 1) }])
    const dir = await freshDir()
    await rejectsWith(unpackTar(streamOf(bytes.subarray(0, 2048)), dir, { whiteouts: true }), 'invalid_argument', /not a valid tar/)
  })

  it('keeps security.capability and user.* xattrs and drops trusted.* and other security.*', async () => {
    const capability = Buffer.from('0100000200200000000000000000000000000000', 'hex') // cap_net_raw+ep
    const { dir } = await unpack([
      {
        name: 'ping',
        content: 'elf',
        mode: 0o755,
        uid: 1234,
        pax: {
          'SCHILY.xattr.security.capability': capability.toString('latin1'),
          'SCHILY.xattr.user.note': 'kept',
          'SCHILY.xattr.trusted.overlay.redirect': '/etc',
          'SCHILY.xattr.security.selinux': 'system_u:object_r:bin_t:s0',
        },
      },
      // cap_setuid has a byte over 0x7f, which tar-stream cannot hand over exactly: dropped, not forged.
      { name: 'lossy', content: 'elf', rawPax: { 'SCHILY.xattr.security.capability': Buffer.from('0100000280000000000000000000000000000000', 'hex') } },
      { name: 'dir/', type: 'directory', pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y', 'LIBARCHIVE.xattr.user.b64': Buffer.from('bytes').toString('base64') } },
    ])
    const ping = join(dir, 'ping')
    assert.deepEqual(execFileSync('getfattr', ['-h', '--only-values', '-n', 'security.capability', ping]), capability)
    assert.equal(getXattr(ping, 'user.note'), 'kept')
    assert.equal(getXattr(ping, 'trusted.overlay.redirect'), null)
    assert.equal(getXattr(ping, 'security.selinux'), null)
    assert.equal(getXattr(join(dir, 'lossy'), 'security.capability'), null)
    assert.equal(getXattr(join(dir, 'dir'), 'trusted.overlay.opaque'), null)
    assert.equal(getXattr(join(dir, 'dir'), 'user.b64'), 'bytes')
    assert.equal((await stat(ping)).uid, 1234, 'chown came before the capability')
  })

  it('stops on cancel', async () => {
    const controller = new AbortController()
    const dir = await freshDir()
    const bytes = await tarBytes([{ name: 'f', content: 'x' }])
    let sent = false
    const { Readable } = await import('node:stream')
    const stalled = new Readable({
      read() {
        if (sent) return // never more, never an end: only the cancel ends the unpack
        sent = true
        this.push(bytes.subarray(0, 512))
        setImmediate(() => controller.abort())
      },
    })
    await rejectsWith(unpackTar(stalled, dir, { whiteouts: true, signal: controller.signal }), 'canceled', /canceled/)
    assert.ok(stalled.destroyed)
  })
})
