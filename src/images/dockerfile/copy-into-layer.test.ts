import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chown, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, utimes, writeFile, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import { lookupInChain } from './chain-fs.js'
import { resolveOwner } from './chain-users.js'
import { resolveSources } from './context-sources.js'
import { copyIntoLayer } from './copy-into-layer.js'
import { parseDockerignore } from './dockerignore.js'

// Owners and whiteouts (mknod) need root; the rest runs as anyone.
const asRoot = process.getuid?.() === 0
let work: string
let ctx: string
let base: string
let outside: string
let n = 0

async function tree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [rel, body] of Object.entries(files)) {
    await mkdir(join(dir, rel, '..'), { recursive: true })
    await writeFile(join(dir, rel), body)
  }
}

async function copy(patterns: string[], dest: string, extra: { lowerDirs?: string[]; owner?: { uid: number; gid: number }; chmod?: number; add?: boolean; maxLayerBytes?: number; roomBytes?: number; roomFiles?: number } = {}): Promise<string> {
  const layerDir = join(work, `layer-${n++}`)
  await mkdir(layerDir)
  const sources = await resolveSources(ctx, patterns, parseDockerignore(''), 'COPY')
  await copyIntoLayer({ layerDir, lowerDirs: extra.lowerDirs ?? [base], contextDir: ctx, sources, dest, where: 'Dockerfile line 2 (COPY)', ...(extra.owner && { owner: extra.owner }), ...(extra.chmod !== undefined && { chmod: extra.chmod }), extractArchives: extra.add ?? false, ...(extra.maxLayerBytes !== undefined && { maxLayerBytes: extra.maxLayerBytes }), ...(extra.roomBytes !== undefined && { roomBytes: extra.roomBytes }), ...(extra.roomFiles !== undefined && { roomFiles: extra.roomFiles }) })
  return layerDir
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sandstorm-copy-'))
  ctx = join(work, 'ctx')
  base = join(work, 'base')
  outside = join(work, 'outside')
  await mkdir(outside)
  await tree(ctx, { 'a.txt': 'hello', 'tool.sh': '#!/bin/sh\n', 'app/main.js': 'main', 'app/lib/util.js': 'util', 'evil/x/file': 'payload' })
  await chmod(join(ctx, 'tool.sh'), 0o755)
  await symlink(outside, join(ctx, 'app/x'))
  await tree(base, {
    'etc/passwd': 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n',
    'etc/group': 'root:x:0:\nstaff:x:50:\napp:x:1001:\n',
    'usr/bin/sh': '',
  })
  await symlink('usr/bin', join(base, 'bin'))
  await mkdir(join(base, 'home/app'), { recursive: true })
  await chmod(join(base, 'home/app'), 0o750)
  if (asRoot) await chown(join(base, 'home/app'), 1000, 1001)
})
after(() => rm(work, { recursive: true, force: true }))

describe('copyIntoLayer', () => {

  it('copies a file into a directory through the chain symlinks (/bin/ -> /usr/bin/), keeping its mode', async () => {
    const layer = await copy(['tool.sh'], '/bin/')
    assert.deepEqual(await readdir(layer), ['usr'])
    const st = await lstat(join(layer, 'usr/bin/tool.sh'))
    assert.equal(st.mode & 0o777, 0o755)
    if (asRoot) assert.deepEqual([st.uid, st.gid], [0, 0])
  })

  it('copies to a file name, and into a directory the chain has', async () => {
    assert.equal(await readFile(join(await copy(['a.txt'], '/opt/renamed'), 'opt/renamed'), 'utf8'), 'hello')
    assert.equal(await readFile(join(await copy(['a.txt'], '/home/app'), 'home/app/a.txt'), 'utf8'), 'hello')
  })

  it("copies a directory's contents, symlinks as symlinks", async () => {
    const layer = await copy(['app'], '/srv/')
    assert.deepEqual((await readdir(join(layer, 'srv'))).sort(), ['lib', 'main.js', 'x'])
    assert.equal(await readlink(join(layer, 'srv/x')), outside)
    assert.equal(await readFile(join(layer, 'srv/lib/util.js'), 'utf8'), 'util')
  })

  it('never writes through a symlink it copied: a later source lands inside the layer, not on the host', async () => {
    // app/x is a symlink to a host directory; evil/x/file then goes to /srv/x/file.
    const layer = await copy(['app', 'evil'], '/srv/')
    assert.deepEqual(await readdir(outside), [], 'nothing was written on the host')
    assert.equal(await readFile(join(layer, outside, 'file'), 'utf8'), 'payload', 'the symlink was resolved inside the root')
  })

  it("never sets a directory's times through a symlink a later source put in its path", async () => {
    // swap/x/victim is copied to /d/x/victim (its times set once the step is done); lnk/x, a
    // symlink to a host directory, then replaces /d/x. The times must not land on the host's victim.
    const host = join(work, 'host-times')
    await mkdir(join(host, 'victim'), { recursive: true })
    const hostTime = new Date('2001-01-01T00:00:00Z')
    await utimes(join(host, 'victim'), hostTime, hostTime)
    await mkdir(join(ctx, 'swap/x/victim'), { recursive: true })
    await utimes(join(ctx, 'swap/x/victim'), new Date('1990-01-01T00:00:00Z'), new Date('1990-01-01T00:00:00Z'))
    await mkdir(join(ctx, 'lnk'))
    await symlink(host, join(ctx, 'lnk/x'))
    try {
      const layer = await copy(['swap', 'lnk/x'], '/d/')
      assert.equal(await readlink(join(layer, 'd/x')), host)
      assert.equal((await lstat(join(host, 'victim'))).mtime.toISOString(), hostTime.toISOString(), "the host directory's times changed")
    } finally {
      await rm(join(ctx, 'swap'), { recursive: true })
      await rm(join(ctx, 'lnk'), { recursive: true })
    }
  })

  it('ADD never writes through a symlink an archive merged over a directory an earlier source made', async () => {
    // p/x/ makes /d/x; the archive's x, a symlink to a host directory, replaces it; q/x/planted
    // then goes to /d/x/planted, which must be resolved anew inside the layer.
    const host = join(work, 'host-merge')
    await mkdir(host)
    await tree(ctx, { 'p/x/keep': 'keep', 'q/x/planted': 'payload' })
    const src = join(work, 'ln-src')
    await mkdir(src)
    await symlink(host, join(src, 'x'))
    execFileSync('tar', ['-cf', join(ctx, 'ln.tar'), '-C', src, 'x'])
    try {
      const layer = await copy(['p', 'ln.tar', 'q'], '/d/', { add: true })
      assert.deepEqual(await readdir(host), [], 'a file was written on the host')
      assert.equal(await readFile(join(layer, host, 'planted'), 'utf8'), 'payload', 'the symlink was resolved inside the root')
    } finally {
      for (const rel of ['p', 'q', 'ln.tar']) await rm(join(ctx, rel), { recursive: true })
    }
  })

  it('recreates parent directories the chain has with its mode and owner', async () => {
    const layer = await copy(['a.txt'], '/home/app/docs/')
    const st = await lstat(join(layer, 'home/app'))
    assert.equal(st.mode & 0o777, 0o750)
    if (asRoot) assert.deepEqual([st.uid, st.gid], [1000, 1001])
    assert.equal((await lstat(join(layer, 'home/app/docs'))).mode & 0o777, 0o755)
  })

  it('refuses several sources to a destination without a trailing /', async () => {
    await assert.rejects(copy(['a.txt', 'tool.sh'], '/opt/x'), (e: unknown) => e instanceof SandstormError && /line 2 \(COPY\): copying 2 sources needs a destination directory ending with "\/"/.test(e.message))
  })

  it('applies --chmod', async () => {
    const layer = await copy(['a.txt'], '/x/', { chmod: 0o600 })
    assert.equal((await lstat(join(layer, 'x/a.txt'))).mode & 0o777, 0o600)
  })

  it('ADD unpacks a local tar.gz into the destination', async () => {
    const src = join(work, 'tar-src')
    await tree(src, { 'pkg/readme': 'readme', 'pkg/bin/run': 'run' })
    execFileSync('tar', ['-czf', join(ctx, 'pkg.tar.gz'), '-C', src, 'pkg'])
    try {
      const layer = await copy(['pkg.tar.gz'], '/opt/', { add: true })
      assert.equal(await readFile(join(layer, 'opt/pkg/bin/run'), 'utf8'), 'run')
      assert.deepEqual((await readdir(join(layer, 'opt'))).sort(), ['pkg'])
      const copied = await copy(['pkg.tar.gz'], '/opt/')
      assert.deepEqual(await readdir(join(copied, 'opt')), ['pkg.tar.gz'], 'COPY copies it as it is')
    } finally {
      await rm(join(ctx, 'pkg.tar.gz'))
    }
  })

  it('holds a COPY to the layer bound, counting a file each time a hardlink copies it again', async () => {
    const dir = join(ctx, 'linked')
    await mkdir(dir)
    await writeFile(join(dir, 'big'), Buffer.alloc(512 * 1024))
    for (let i = 0; i < 8; i++) execFileSync('ln', [join(dir, 'big'), join(dir, `link-${i}`)])
    try {
      // 9 copies of 512 KiB: 4.5 MiB written from a context that holds 512 KiB.
      await assert.rejects(copy(['linked'], '/app/', { maxLayerBytes: 1024 * 1024 }), (err: unknown) => err instanceof SandstormError && err.code === 'resource_exhausted' && /COPY\): the layer would hold more than 1048576 bytes/.test(err.message))
      const fits = await copy(['linked'], '/app/', { maxLayerBytes: 5 * 1024 * 1024 })
      assert.equal((await readdir(join(fits, 'app'))).length, 9)
    } finally {
      await rm(dir, { recursive: true })
    }
  })

  it('holds what ADD unpacks to the layer bound, with what the step copied before it', async () => {
    const src = join(work, 'tar-big')
    await mkdir(src, { recursive: true })
    await writeFile(join(src, 'zeros'), Buffer.alloc(2 * 1024 * 1024))
    execFileSync('tar', ['-czf', join(ctx, 'zeros.tar.gz'), '-C', src, 'zeros'])
    try {
      await assert.rejects(copy(['zeros.tar.gz'], '/opt/', { add: true, maxLayerBytes: 1024 * 1024 }), (err: unknown) => err instanceof SandstormError && err.code === 'resource_exhausted')
      const fits = await copy(['zeros.tar.gz'], '/opt/', { add: true, maxLayerBytes: 3 * 1024 * 1024 })
      assert.equal((await lstat(join(fits, 'opt/zeros'))).size, 2 * 1024 * 1024)
    } finally {
      await rm(join(ctx, 'zeros.tar.gz'))
    }
  })

  it("holds a COPY and an ADD to the room on the host's disk, saying what they needed and what was free", async () => {
    const src = join(work, 'tar-room')
    await mkdir(join(ctx, 'room'), { recursive: true })
    await mkdir(src, { recursive: true })
    await writeFile(join(ctx, 'room', 'big'), Buffer.alloc(1024 * 1024))
    await writeFile(join(src, 'zeros'), Buffer.alloc(2 * 1024 * 1024))
    execFileSync('tar', ['-czf', join(ctx, 'room.tar.gz'), '-C', src, 'zeros'])
    const noRoom = (neededBytes: number) => (err: unknown) =>
      err instanceof SandstormError && err.code === 'resource_exhausted' && err.message.startsWith(`Dockerfile line 2 (COPY) failed: the host's disk is full: it needs at least ${neededBytes} bytes and ${512 * 1024} bytes are free`)
    try {
      // Both far under the layer's own bound (16 GiB), but more than the room.
      await assert.rejects(copy(['room/big'], '/app/', { roomBytes: 512 * 1024 }), noRoom(1024 * 1024))
      await assert.rejects(copy(['room.tar.gz'], '/opt/', { add: true, roomBytes: 512 * 1024 }), noRoom(2 * 1024 * 1024))
      const fits = await copy(['room.tar.gz'], '/opt/', { add: true, roomBytes: 3 * 1024 * 1024 })
      assert.equal((await lstat(join(fits, 'opt/zeros'))).size, 2 * 1024 * 1024)
    } finally {
      await rm(join(ctx, 'room'), { recursive: true })
      await rm(join(ctx, 'room.tar.gz'))
    }
  })

  it("holds a COPY to the host's free inodes: empty files and symlinks take no block but one inode each", async () => {
    const dir = join(ctx, 'inodes')
    await mkdir(dir)
    for (let i = 0; i < 8; i++) await writeFile(join(dir, `e${i}`), '')
    for (let i = 0; i < 4; i++) await symlink('e0', join(dir, `l${i}`))
    const outOfInodes = (err: unknown) => err instanceof SandstormError && err.code === 'resource_exhausted' && /out of inodes: it needs at least 11 files and 10 are free/.test(err.message)
    try {
      // The directory, 8 empty files and 4 symlinks: 13 inodes.
      await assert.rejects(copy(['inodes'], '/e/', { roomFiles: 10 }), outOfInodes)
      const fits = await copy(['inodes'], '/e/', { roomFiles: 13 })
      assert.equal((await readdir(join(fits, 'e'))).length, 12)
    } finally {
      await rm(dir, { recursive: true })
    }
  })

  it('copies as the --chown owner', { skip: !asRoot && 'needs root to chown' }, async () => {
    const owner = await resolveOwner([base], 'app:staff')
    const layer = await copy(['app'], '/srv/', { owner })
    for (const rel of ['srv', 'srv/main.js', 'srv/lib', 'srv/x']) {
      const st = await lstat(join(layer, rel))
      assert.deepEqual([st.uid, st.gid], [1000, 50], rel)
    }
  })
})

describe('resolveOwner', () => {
  it('reads names from the chain, numbers as they are (a user alone: gid = uid)', async () => {
    assert.deepEqual(await resolveOwner([base], 'app'), { uid: 1000, gid: 1000 })
    assert.deepEqual(await resolveOwner([base], 'app', { primaryGroup: true }), { uid: 1000, gid: 1001 })
    assert.deepEqual(await resolveOwner([base], 'app:staff'), { uid: 1000, gid: 50 })
    assert.deepEqual(await resolveOwner([base], '42:43'), { uid: 42, gid: 43 })
    assert.deepEqual(await resolveOwner([], '42'), { uid: 42, gid: 42 })
    await assert.rejects(resolveOwner([base], 'nobody'), /expected a user of the image's \/etc\/passwd, got "nobody"/)
    await assert.rejects(resolveOwner([base], 'app:wheel'), /expected a group of the image's \/etc\/group, got "wheel"/)
  })

  it('never reads /etc/passwd through a symlink, and a whiteout hides the lower file', async () => {
    const top = join(work, 'top-link')
    await mkdir(join(top, 'etc'), { recursive: true })
    const hostFile = join(work, 'host-passwd')
    await writeFile(hostFile, 'evil:x:7:7::/:/bin/sh\n')
    await symlink(hostFile, join(top, 'etc/passwd'))
    await assert.rejects(resolveOwner([top, base], 'evil'), /the image has no \/etc\/passwd/)
    await assert.rejects(resolveOwner([top, base], 'app'), /the image has no \/etc\/passwd/)
    if (asRoot) {
      const wh = join(work, 'top-whiteout')
      await mkdir(join(wh, 'etc'), { recursive: true })
      execFileSync('mknod', [join(wh, 'etc/group'), 'c', '0', '0'])
      assert.equal((await lookupInChain([wh, base], 'etc/group')).entry, null)
      await assert.rejects(resolveOwner([wh, base], 'app:staff'), /the image has no \/etc\/group/)
      assert.deepEqual(await resolveOwner([wh, base], 'app:1'), { uid: 1000, gid: 1 })
    }
  })
})
