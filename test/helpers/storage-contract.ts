/**
 * The storage contract: every storage driver (overlay, btrfs) runs these cases on real overlay
 * mounts. A driver that cannot do a case lists it by name with its reason.
 */
import assert from 'node:assert/strict'
import { lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { execa } from 'execa'
import { SandstormError } from '../../src/shared/index.js'
import { createLayerStore, isWhiteout, mountOverlay, unmount, type LayerStore, type StorageDriver } from '../../src/storage/index.js'

/** Where a driver's cases run: a base dir on the filesystem the driver needs. */
export interface StorageContractSetup {
  driver: StorageDriver
  /** A fresh dir on the right filesystem for one case; removed by the suite. */
  baseDir(): Promise<string>
  /** Cases this driver skips, by name, with the reason. */
  skip?: Record<string, string>
}

/** The file tree a mount shows, as `path -> content` (dirs as `dir`, links as `-> target`). */
export async function viewOf(root: string, rel = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const name of (await readdir(join(root, rel))).sort()) {
    const path = join(rel, name)
    const st = await lstat(join(root, path))
    if (st.isDirectory()) {
      out[path] = 'dir'
      Object.assign(out, await viewOf(root, path))
    } else if (st.isSymbolicLink()) out[path] = `-> ${await readlink(join(root, path))}`
    else if (st.isFile()) out[path] = await readFile(join(root, path), 'utf8')
    else out[path] = isWhiteout(st) ? 'whiteout' : 'other'
  }
  return out
}

interface Ctx {
  base: string
  driver: StorageDriver
  template: string
  store: LayerStore
  mounts: string[]
  /** Makes a sandbox's root from `fromId` (with a disk quota of `diskMiB`) and mounts it; returns the mount point. */
  sandbox(id: string, fromId: string | null, diskMiB?: number): Promise<string>
  snapshot(sandboxId: string, snapId: string): Promise<void>
}

let counter = 0
const nextId = (prefix: string) => `${prefix}-${String(++counter).padStart(16, '0')}`

/** Registers the contract cases for one driver. */
export function storageContract(name: string, setup: () => Promise<StorageContractSetup | string>): void {
  const cases: [string, (ctx: Ctx) => Promise<void>][] = [
    ['a fork sees the snapshot, and forks do not see each other', forkIsolation],
    ['deleted files and replaced dirs stay deleted in forks', whiteoutsStay],
    ['a snapshot is read-only history: later writes of the sandbox do not reach it', snapshotIsFrozenPoint],
    ['deep chains are squashed and keep whiteouts and opaque dirs', deepChainSquash],
    ['a snapshot that others stand on cannot be deleted; a leaf frees its space', deleteRules],
    ['links left by the sandbox are never followed on the host', linksNotFollowed],
    ['a disk quota stops writes past it, counts only what the sandbox wrote, and leaves nothing', quotaHolds],
    ['a tree deeper than a path can name is copied and removed, and what a crash left of one does not stop the store', deepTree],
  ]
  for (const [title, body] of cases) {
    test(`${name}: ${title}`, async (t) => {
      const s = await setup()
      if (typeof s === 'string') return t.skip(s)
      if (s.skip?.[title]) return t.skip(s.skip[title])
      const base = await s.baseDir()
      const template = join(base, 'template')
      await mkdir(join(template, 'dir', 'sub'), { recursive: true })
      await mkdir(join(template, 'replaced'), { recursive: true })
      await writeFile(join(template, 'a.txt'), 'template a')
      await writeFile(join(template, 'gone.txt'), 'template gone')
      await writeFile(join(template, 'dir', 'b.txt'), 'template b')
      await writeFile(join(template, 'dir', 'sub', 'c.txt'), 'template c')
      await writeFile(join(template, 'replaced', 'x.txt'), 'template x')
      const store = createLayerStore({ dir: join(base, 'store'), driver: s.driver, maxChainDepth: 3 })
      const mounts: string[] = []
      const ctx: Ctx = {
        base,
        driver: s.driver,
        template,
        store,
        mounts,
        async sandbox(id, fromId, diskMiB) {
          const prepared = await store.prepare(id, fromId, {}, diskMiB === undefined ? {} : { diskMiB })
          const target = join(base, 'mnt', id)
          await mountOverlay({ lowerDirs: [...prepared.lowerDirs, template], upperDir: prepared.upperDir, workDir: prepared.workDir, target })
          mounts.push(target)
          return target
        },
        async snapshot(sandboxId, snapId) {
          let frozen = 0
          let freezes = 0
          await store.capture(sandboxId, snapId, {}, { freeze: async () => void (frozen++, freezes++), thaw: async () => void frozen-- })
          assert.equal(freezes, 1, 'the sandbox is frozen for the copy')
          assert.equal(frozen, 0, 'every freeze is thawed')
        },
      }
      try {
        await body(ctx)
      } finally {
        for (const m of mounts.reverse()) await unmount(m)
        for (const sb of await store.sandboxes().catch(() => [])) await store.release(sb).catch(() => undefined)
        await rm(base, { recursive: true, force: true }).catch(() => undefined)
      }
    })
  }
}

async function forkIsolation(ctx: Ctx): Promise<void> {
  const sb = nextId('sb')
  const root = await ctx.sandbox(sb, null)
  await writeFile(join(root, 'a.txt'), 'changed a')
  await mkdir(join(root, 'new'))
  await writeFile(join(root, 'new', 'n.txt'), 'new file')
  const snap = nextId('snap')
  await ctx.snapshot(sb, snap)
  const [f1, f2] = [nextId('sb'), nextId('sb')]
  const r1 = await ctx.sandbox(f1, snap)
  const r2 = await ctx.sandbox(f2, snap)
  const expected = await viewOf(root)
  assert.deepEqual(await viewOf(r1), expected)
  assert.deepEqual(await viewOf(r2), expected)
  await writeFile(join(r1, 'new', 'n.txt'), 'fork 1 was here')
  await writeFile(join(r1, 'only-1.txt'), 'one')
  await rm(join(r2, 'a.txt'))
  assert.equal(await readFile(join(r2, 'new', 'n.txt'), 'utf8'), 'new file')
  await assert.rejects(readFile(join(r2, 'only-1.txt')), { code: 'ENOENT' })
  assert.equal(await readFile(join(r1, 'a.txt'), 'utf8'), 'changed a')
  assert.equal(await readFile(join(root, 'a.txt'), 'utf8'), 'changed a')
}

async function whiteoutsStay(ctx: Ctx): Promise<void> {
  const sb = nextId('sb')
  const root = await ctx.sandbox(sb, null)
  await unlink(join(root, 'gone.txt'))
  await rm(join(root, 'replaced'), { recursive: true })
  await mkdir(join(root, 'replaced'))
  await writeFile(join(root, 'replaced', 'y.txt'), 'new y')
  await rm(join(root, 'dir', 'sub'), { recursive: true })
  const snap = nextId('snap')
  await ctx.snapshot(sb, snap)
  const fork = await ctx.sandbox(nextId('sb'), snap)
  await assert.rejects(lstat(join(fork, 'gone.txt')), { code: 'ENOENT' })
  await assert.rejects(lstat(join(fork, 'dir', 'sub')), { code: 'ENOENT' })
  assert.deepEqual(await readdir(join(fork, 'replaced')), ['y.txt'])
  assert.equal(await readFile(join(fork, 'dir', 'b.txt'), 'utf8'), 'template b')
}

async function snapshotIsFrozenPoint(ctx: Ctx): Promise<void> {
  const sb = nextId('sb')
  const root = await ctx.sandbox(sb, null)
  await writeFile(join(root, 'a.txt'), 'before')
  const snap = nextId('snap')
  await ctx.snapshot(sb, snap)
  await writeFile(join(root, 'a.txt'), 'after')
  await writeFile(join(root, 'later.txt'), 'later')
  const fork = await ctx.sandbox(nextId('sb'), snap)
  assert.equal(await readFile(join(fork, 'a.txt'), 'utf8'), 'before')
  await assert.rejects(lstat(join(fork, 'later.txt')), { code: 'ENOENT' })
  assert.equal(await readFile(join(root, 'a.txt'), 'utf8'), 'after')
}

async function deepChainSquash(ctx: Ctx): Promise<void> {
  let from: string | null = null
  let root = ''
  // Each level changes something a lower level made, deletes, and replaces dirs both ways.
  for (let level = 0; level < 5; level++) {
    const sb = nextId('sb')
    root = await ctx.sandbox(sb, from)
    await writeFile(join(root, `level-${level}.txt`), `level ${level}`)
    await writeFile(join(root, 'a.txt'), `a at ${level}`)
    if (level === 0) {
      await unlink(join(root, 'gone.txt'))
      await mkdir(join(root, 'made'))
      await writeFile(join(root, 'made', 'm.txt'), 'm')
      await rm(join(root, 'dir', 'sub'), { recursive: true })
    }
    if (level === 1) {
      await writeFile(join(root, 'gone.txt'), 'back again')
      await rm(join(root, 'made'), { recursive: true })
      await unlink(join(root, 'level-0.txt'))
    }
    if (level === 2) {
      await mkdir(join(root, 'made'))
      await writeFile(join(root, 'made', 'second.txt'), 'second')
      await mkdir(join(root, 'dir', 'sub'))
      await writeFile(join(root, 'dir', 'sub', 'fresh.txt'), 'fresh')
      await unlink(join(root, 'gone.txt'))
    }
    if (level === 3) {
      await rm(join(root, 'replaced'), { recursive: true })
      await writeFile(join(root, 'replaced'), 'now a file')
    }
    const snap = nextId('snap')
    await ctx.snapshot(sb, snap)
    const record = await ctx.store.get(snap)
    assert.ok(record.chain.length < 3, `chain of level ${level} is ${record.chain.length} deep: expected fewer than 3`)
    from = snap
  }
  const fork = await ctx.sandbox(nextId('sb'), from)
  assert.deepEqual(await viewOf(fork), await viewOf(root))
  const view = await viewOf(fork)
  assert.equal(view['gone.txt'], undefined)
  assert.equal(view['level-0.txt'], undefined)
  assert.equal(view['dir/sub/c.txt'], undefined)
  assert.equal(view['dir/sub/fresh.txt'], 'fresh')
  assert.deepEqual(Object.keys(view).filter((k) => k.startsWith('made/')), ['made/second.txt'])
  assert.equal(view['replaced'], 'now a file')
}

async function deleteRules(ctx: Ctx): Promise<void> {
  const sb = nextId('sb')
  const root = await ctx.sandbox(sb, null)
  await writeFile(join(root, 'big.bin'), Buffer.alloc(1 << 20, 7))
  const parent = nextId('snap')
  await ctx.snapshot(sb, parent)
  const childSb = nextId('sb')
  const childRoot = await ctx.sandbox(childSb, parent)
  await writeFile(join(childRoot, 'c.txt'), 'child')
  const child = nextId('snap')
  await ctx.snapshot(childSb, child)
  await assert.rejects(ctx.store.remove(parent), (err: unknown) => {
    assert.ok(err instanceof SandstormError)
    assert.equal(err.code, 'failed_precondition')
    assert.match(err.message, new RegExp(`snapshot ${child}`))
    return true
  })
  await ctx.store.remove(child)
  // An overlay child sandbox still stands on the parent; a btrfs one has its own snapshot of it.
  if (ctx.store.driver.name === 'overlay') await assert.rejects(ctx.store.remove(parent), new RegExp(`sandbox ${childSb}`))
  await unmount(childRoot)
  await ctx.store.release(childSb)
  await ctx.store.remove(parent)
  await assert.rejects(ctx.store.get(parent), { code: 'not_found' })
  await assert.rejects(lstat(ctx.store.treeOf(parent)), { code: 'ENOENT' })
  assert.deepEqual((await ctx.store.list()).map((l) => l.id), [])
}

/** Python walking by directory fds: no path names the bottom of a deep tree, and a shell's cd stops short of it. */
const deepTreeScript = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
for _ in range(int(sys.argv[2])):
    if sys.argv[3] == 'make':
        os.mkdir('aaaaaaaaaa', dir_fd=fd)
    below = os.open('aaaaaaaaaa', os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = below
if sys.argv[3] == 'make':
    f = os.open('f', os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(f, b'bottom')
else:
    f = os.open('f', os.O_RDONLY, dir_fd=fd)
    print(os.read(f, 100).decode(), end='')
`
/** Makes `levels` nested dirs of 10-letter names under `dir`, and a file `f` at the bottom. */
async function nest(dir: string, levels: number): Promise<void> {
  await execa('python3', ['-c', deepTreeScript, dir, String(levels), 'make'])
}

async function deepTree(ctx: Ctx): Promise<void> {
  // 450 levels: a 4,950-byte path, past PATH_MAX (4,096), which fs.rm cannot remove.
  const sb = nextId('sb')
  const root = await ctx.sandbox(sb, null)
  await nest(root, 450)
  const snap = nextId('snap')
  await ctx.snapshot(sb, snap)
  const fork = await ctx.sandbox(nextId('sb'), snap)
  const bottom = await execa('python3', ['-c', deepTreeScript, fork, '450', 'read'])
  assert.equal(bottom.stdout, 'bottom')
  for (const m of ctx.mounts.splice(0).reverse()) await unmount(m)
  for (const id of await ctx.store.sandboxes()) await ctx.store.release(id)
  await ctx.store.remove(snap)
  assert.deepEqual((await readdir(join(ctx.base, 'store', 'layers'))).filter((n) => n.startsWith('.tmp-') || n === snap), [])
  // A copy that a crash left half made: a store opened over it starts, and removes it.
  const left = join(ctx.base, 'store', 'layers', '.tmp-snap-left-by-a-crash')
  await mkdir(join(left, 'tree'), { recursive: true })
  await nest(join(left, 'tree'), 450)
  const reopened = createLayerStore({ dir: join(ctx.base, 'store'), driver: ctx.driver })
  assert.deepEqual(await reopened.list(), [])
  assert.deepEqual((await readdir(join(ctx.base, 'store', 'layers'))).filter((n) => n.startsWith('.tmp-')), [])
}

async function linksNotFollowed(ctx: Ctx): Promise<void> {
  const canary = join(ctx.base, 'host-canary')
  await mkdir(canary)
  await writeFile(join(canary, 'secret'), 'host secret')
  let from: string | null = null
  let root = ''
  for (let level = 0; level < 4; level++) {
    const sb = nextId('sb')
    root = await ctx.sandbox(sb, from)
    if (level === 0) {
      await symlink(canary, join(root, 'p'))
      await symlink(join(canary, 'secret'), join(root, 'f'))
    }
    if (level === 2) {
      // Replace the links inside the sandbox's tree with a dir and a file of the same names.
      await unlink(join(root, 'p'))
      await mkdir(join(root, 'p'))
      await writeFile(join(root, 'p', 'secret'), 'sandbox data')
      await unlink(join(root, 'f'))
      await writeFile(join(root, 'f'), 'sandbox file')
    }
    const snap: string = nextId('snap')
    await ctx.snapshot(sb, snap)
    from = snap
  }
  const fork = await ctx.sandbox(nextId('sb'), from)
  assert.equal(await readFile(join(fork, 'p', 'secret'), 'utf8'), 'sandbox data')
  assert.equal(await readFile(join(fork, 'f'), 'utf8'), 'sandbox file')
  assert.deepEqual(await readdir(canary), ['secret'])
  assert.equal(await readFile(join(canary, 'secret'), 'utf8'), 'host secret')
}

/** Writes 1 MiB blocks to `path` until `mib` are written or a write fails; the count and the error. */
async function fill(path: string, mib: number): Promise<{ written: number; error: NodeJS.ErrnoException | null }> {
  const block = Buffer.alloc(1 << 20, 0x5a)
  const fh = await open(path, 'w')
  let written = 0
  let error: NodeJS.ErrnoException | null = null
  try {
    for (; written < mib; written++) await fh.write(block)
    await fh.sync()
  } catch (err) {
    error = err as NodeJS.ErrnoException
  } finally {
    await fh.close().catch((err: unknown) => (error ??= err as NodeJS.ErrnoException))
  }
  return { written, error }
}

async function quotaHolds(ctx: Ctx): Promise<void> {
  const quotaMiB = 40
  const sb = nextId('sb')
  const root = await ctx.sandbox(sb, null, quotaMiB)
  // Past the quota: ENOSPC from the sandbox's own filesystem (overlay), EDQUOT (122, which
  // libuv does not name) from its qgroup (btrfs).
  const over = await fill(join(root, 'big'), 80)
  assert.ok(over.error && (over.error.code === 'ENOSPC' || over.error.errno === -122), `expected the write to stop, got ${over.error?.message ?? `${over.written} MiB written`}`)
  assert.ok(over.written <= quotaMiB, `wrote ${over.written} MiB under a ${quotaMiB} MiB quota`)
  const usage = await ctx.store.usage(sb)
  assert.ok(usage && usage.limitBytes <= quotaMiB * 1024 * 1024 && usage.usedBytes >= 16 * 1024 * 1024, `usage: ${JSON.stringify(usage)}`)
  // A fork pays only for what it writes: the snapshot's 20 MiB are not its own.
  await rm(join(root, 'big'))
  assert.equal((await fill(join(root, 'kept'), 20)).error, null)
  const snap = nextId('snap')
  await ctx.snapshot(sb, snap)
  const fork = nextId('sb')
  const forkRoot = await ctx.sandbox(fork, snap, quotaMiB)
  assert.equal((await stat(join(forkRoot, 'kept'))).size, 20 << 20)
  assert.equal((await fill(join(forkRoot, 'more'), 24)).error, null, 'a fork writes its own quota beside what it shares')
  // Released, a sandbox leaves no image, mount or dir behind.
  for (const [id, mnt] of [[fork, forkRoot], [sb, root]] as const) {
    await unmount(mnt)
    await ctx.store.release(id)
  }
  const writable = join(ctx.base, 'store', 'writable')
  assert.deepEqual((await readdir(writable)).filter((n) => n.startsWith('sb-')), [])
  const table = await readFile('/proc/self/mountinfo', 'utf8')
  assert.ok(!table.includes(writable), 'no mount is left under the writable dirs')
}

/** A temp dir for overlay cases, on the default filesystem. */
export async function tempBase(parent: string): Promise<string> {
  return mkdtemp(join(parent, 'storage-'))
}
