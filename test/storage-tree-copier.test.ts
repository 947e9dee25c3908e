/**
 * The resident copier that turns a frozen upper dir into a layer: what overlayfs and a hostile
 * sandbox can leave in an upper dir comes out as `cp -a` makes it, links are never followed, and
 * the copy shares nothing the sandbox can change afterwards; its btrfs snapshots are subvolume
 * snapshots. Needs root (mknod, chown, trusted.*, a btrfs loop file).
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { appendFile, chmod, chown, link, lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, truncate, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { isWhiteout, opaqueXattr } from '../src/storage/index.js'
import { copyTree } from '../src/storage/layers/copy-tree.js'
import { copyUpper, snapshotSubvolume } from '../src/storage/layers/tree-copier.js'
import { btrfsSkipReason, makeBtrfsLoop, type BtrfsLoop } from './helpers/btrfs-loop.js'

const skip = process.getuid?.() !== 0 ? 'the copier tests need root (device nodes, owners, trusted xattrs)' : false

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' })
const xattr = (path: string, name: string) => sh('getfattr', ['-h', '--only-values', '-n', name, path])
/**
 * Every entry's type, mode, owner, size, link count, mtime and link target, and every xattr, as one
 * text, in name order. A dir's size is left out: it depends on the order its entries were made in.
 */
const listing = (dir: string) =>
  sh('find', [dir, '-mindepth', '1', '-printf', '%P %y %m %U:%G %s %n %T@ %l\n'])
    .split('\n')
    .map((line) => line.replace(/^(\S+ d \S+ \S+) \d+/, '$1 -'))
    .sort()
    .join('\n') +
  sh('getfattr', ['-R', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', dir])
    .replaceAll(dir, '<root>')
    .split('\n\n')
    .sort()
    .join('\n\n')

describe('copying a frozen upper dir into a layer', { skip }, () => {
  let base: string
  let upper: string
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'sandstorm-copier-test-'))
    upper = join(base, 'upper')
    // What overlayfs writes into an upper dir: files, a deletion of a lower file (a 0/0 char
    // device, hard-linked as overlay shares one), a dir that replaced a lower one (opaque).
    await mkdir(join(upper, 'etc', 'deep', 'er'), { recursive: true })
    await writeFile(join(upper, 'etc', 'conf'), 'changed')
    sh('mknod', [join(upper, 'etc', 'deleted'), 'c', '0', '0'])
    await link(join(upper, 'etc', 'deleted'), join(upper, 'deleted-too'))
    await mkdir(join(upper, 'replaced'))
    await writeFile(join(upper, 'replaced', 'new.txt'), 'new')
    sh('setfattr', ['-n', opaqueXattr, '-v', 'y', join(upper, 'replaced')])
    // What a sandbox can make: links out of the layer, hard links, setuid files, owners, xattrs,
    // old times, FIFOs, a big file and many small ones.
    await symlink('/etc/shadow', join(upper, 'shadow'))
    await symlink('../../../outside', join(upper, 'etc', 'out'))
    await symlink('/etc', join(upper, 'etc-link'))
    await writeFile(join(upper, 'hard-a'), 'shared')
    await link(join(upper, 'hard-a'), join(upper, 'etc', 'deep', 'hard-b'))
    await writeFile(join(upper, 'suid'), '#!/bin/sh\n')
    await chown(join(upper, 'suid'), 1234, 5678)
    await chmod(join(upper, 'suid'), 0o4755)
    await chown(join(upper, 'etc', 'deep'), 1000, 1000)
    await chmod(join(upper, 'etc', 'deep'), 0o1750)
    sh('setfattr', ['-n', 'user.note', '-v', 'kept', join(upper, 'etc', 'conf')])
    sh('setfattr', ['-n', 'trusted.overlay.origin', '-v', '0sAAEC', join(upper, 'etc', 'conf')])
    sh('setfattr', ['-h', '-n', 'trusted.overlay.origin', '-v', '0sAwQF', join(upper, 'shadow')])
    await utimes(join(upper, 'etc', 'conf'), new Date('2001-02-03T04:05:06Z'), new Date('2002-03-04T05:06:07Z'))
    await utimes(join(upper, 'etc', 'deep', 'er'), new Date('2003-01-01T00:00:00Z'), new Date('2004-01-01T00:00:00Z'))
    sh('mkfifo', [join(upper, 'etc', 'fifo')])
    await writeFile(join(upper, 'big'), Buffer.alloc(24 * 1024 * 1024, 7))
    await mkdir(join(upper, 'many'))
    for (let i = 0; i < 3000; i++) await writeFile(join(upper, 'many', `f${i}`), `file ${i}`)
  })
  after(async () => {
    await rm(base, { recursive: true, force: true })
  })

  it('makes the same tree as cp -a: types, modes, owners, sizes, link counts, times, link targets and xattrs', async () => {
    await copyUpper(upper, join(base, 'copied'))
    await copyTree(upper, join(base, 'by-cp'))
    assert.equal(listing(join(base, 'copied')), listing(join(base, 'by-cp')))
  })

  it('keeps overlay marks: whiteouts are 0/0 char devices, hard links stay linked, opaque dirs stay opaque', async () => {
    const dest = join(base, 'marks')
    await copyUpper(upper, dest)
    const deleted = await lstat(join(dest, 'etc', 'deleted'))
    assert.ok(isWhiteout(deleted), 'the deletion is still a whiteout')
    assert.equal((await lstat(join(dest, 'deleted-too'))).ino, deleted.ino, 'linked whiteouts stay one inode')
    assert.equal((await lstat(join(dest, 'etc', 'deep', 'hard-b'))).ino, (await lstat(join(dest, 'hard-a'))).ino)
    assert.equal(xattr(join(dest, 'replaced'), opaqueXattr), 'y')
    assert.ok((await lstat(join(dest, 'etc', 'fifo'))).isFIFO())
  })

  it('copies links as links and never follows one', async () => {
    const dest = join(base, 'links')
    await copyUpper(upper, dest)
    assert.equal(await readlink(join(dest, 'shadow')), '/etc/shadow')
    assert.equal(await readlink(join(dest, 'etc', 'out')), '../../../outside')
    assert.equal(await readlink(join(dest, 'etc-link')), '/etc')
    assert.ok((await lstat(join(dest, 'etc-link'))).isSymbolicLink(), 'a link to a host dir is not copied as that dir')
    assert.equal(xattr(join(dest, 'shadow'), 'trusted.overlay.origin'), '\x03\x04\x05', 'the link\'s own xattr, not its target\'s')
  })

  it('keeps setuid bits, owners, sticky dirs, xattrs and times', async () => {
    const dest = join(base, 'attrs')
    await copyUpper(upper, dest)
    const suid = await lstat(join(dest, 'suid'))
    assert.equal(suid.mode & 0o7777, 0o4755)
    assert.deepEqual([suid.uid, suid.gid], [1234, 5678])
    const deep = await lstat(join(dest, 'etc', 'deep'))
    assert.equal(deep.mode & 0o7777, 0o1750)
    assert.deepEqual([deep.uid, deep.gid], [1000, 1000])
    assert.equal(xattr(join(dest, 'etc', 'conf'), 'user.note'), 'kept')
    assert.equal((await lstat(join(dest, 'etc', 'conf'))).mtime.toISOString(), '2002-03-04T05:06:07.000Z')
    assert.equal((await lstat(join(dest, 'etc', 'deep', 'er'))).mtime.toISOString(), '2004-01-01T00:00:00.000Z', 'a dir keeps its time after its entries are made')
  })

  it('copies big files and many files whole', async () => {
    const dest = join(base, 'data')
    await copyUpper(upper, dest)
    assert.deepEqual(await readFile(join(dest, 'big')), await readFile(join(upper, 'big')))
    for (const i of [0, 1234, 2999]) assert.equal(await readFile(join(dest, 'many', `f${i}`), 'utf8'), `file ${i}`)
  })

  it('keeps a sparse file sparse', async () => {
    const src = join(base, 'sparse-src')
    await mkdir(src)
    await writeFile(join(src, 'small'), 'small')
    await writeFile(join(src, 'huge'), '')
    await truncate(join(src, 'huge'), 64 * 1024 ** 3)
    await copyUpper(src, join(base, 'sparse-copy'))
    const huge = await lstat(join(base, 'sparse-copy', 'huge'))
    assert.equal(huge.size, 64 * 1024 ** 3)
    assert.ok(huge.blocks * 512 < 1024 ** 2, `64 GiB of holes take ${huge.blocks * 512} bytes, expected under 1 MiB`)
    assert.equal(await readFile(join(base, 'sparse-copy', 'small'), 'utf8'), 'small')
  })

  it('shares nothing the sandbox changes afterwards', async () => {
    const dest = join(base, 'later')
    await copyUpper(upper, dest)
    await appendFile(join(upper, 'etc', 'conf'), ' again')
    await writeFile(join(upper, 'hard-a'), 'rewritten in place')
    await chmod(join(upper, 'suid'), 0o755)
    assert.equal(await readFile(join(dest, 'etc', 'conf'), 'utf8'), 'changed')
    assert.equal(await readFile(join(dest, 'etc', 'deep', 'hard-b'), 'utf8'), 'shared')
    assert.equal((await lstat(join(dest, 'suid'))).mode & 0o7777, 0o4755)
    await writeFile(join(upper, 'hard-a'), 'shared')
    await writeFile(join(upper, 'etc', 'conf'), 'changed')
    await chmod(join(upper, 'suid'), 0o4755)
  })

  it('copies a tree too deep for the resident copier (through cp -a)', async () => {
    const src = join(base, 'deep-src')
    let dir = src
    for (let i = 0; i < 700; i++) dir = join(dir, 'd')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'bottom'), 'reached')
    await copyUpper(src, join(base, 'deep-copy'))
    assert.equal(await readFile(join(dir.replace(src, join(base, 'deep-copy')), 'bottom'), 'utf8'), 'reached')
  })

  it('refuses a destination that exists, and a source that is a link', async () => {
    await mkdir(join(base, 'taken'))
    await assert.rejects(copyUpper(upper, join(base, 'taken')), /EEXIST/)
    await symlink(upper, join(base, 'upper-link'))
    await assert.rejects(copyUpper(join(base, 'upper-link'), join(base, 'via-link')), /ELOOP|ENOTDIR/)
  })
})

describe('btrfs subvolume snapshots by the resident copier', () => {
  let loop: BtrfsLoop | undefined
  after(async () => {
    await loop?.close()
  })

  it('makes read-only and writable snapshots of a subvolume, and refuses a plain dir', async (t) => {
    const reason = await btrfsSkipReason()
    if (reason) return t.skip(reason)
    loop = await makeBtrfsLoop()
    const volume = join(loop.mountPoint, 'volume')
    sh('btrfs', ['subvolume', 'create', volume])
    await writeFile(join(volume, 'kept'), 'before')
    assert.equal(await snapshotSubvolume(volume, join(loop.mountPoint, 'frozen'), true), true)
    assert.equal(await snapshotSubvolume(volume, join(loop.mountPoint, 'fork'), false), true)
    await writeFile(join(volume, 'kept'), 'after')
    assert.equal(await readFile(join(loop.mountPoint, 'frozen', 'kept'), 'utf8'), 'before')
    assert.equal((await lstat(join(loop.mountPoint, 'frozen'))).ino, 256, 'a subvolume of its own')
    await assert.rejects(writeFile(join(loop.mountPoint, 'frozen', 'kept'), 'x'), /EROFS/)
    await writeFile(join(loop.mountPoint, 'fork', 'kept'), 'forked')
    assert.equal(await readFile(join(volume, 'kept'), 'utf8'), 'after')
    await mkdir(join(loop.mountPoint, 'plain'))
    assert.equal(await snapshotSubvolume(join(loop.mountPoint, 'plain'), join(loop.mountPoint, 'nope'), true), false, 'the caller runs the btrfs tool, which says why')
    for (const v of ['frozen', 'fork', 'volume']) sh('btrfs', ['subvolume', 'delete', join(loop.mountPoint, v)])
  })
})
