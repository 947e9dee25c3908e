import assert from 'node:assert/strict'
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { SandstormError, templateStartSchema } from '../shared/index.js'
import { hostRecipe } from './host-recipe.js'
import type { TemplateRecipe } from './recipe.js'
import { createTemplateStore } from './template-store.js'

let root: string
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'sandstorm-templates-'))
})
after(async () => {
  await rm(root, { recursive: true, force: true })
})

let counter = 0
/** A fresh store directory per test. */
async function freshDir(): Promise<string> {
  const dir = join(root, `store-${++counter}`)
  await mkdir(dir)
  return dir
}

/** Entries of the store dir that belong to unfinished builds. */
async function buildDirs(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((e) => e.startsWith('.build-'))
}

function hasCode(code: string, pattern?: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof SandstormError, `expected a SandstormError, got ${String(err)}`)
    assert.equal(err.code, code)
    if (pattern) assert.match(err.message, pattern)
    return true
  }
}

describe('template store: host template', () => {
  it('builds the skeleton and resolves it with /usr bound read-only', async () => {
    const dir = await freshDir()
    const store = createTemplateStore({ dir })
    const progress: string[] = []
    const info = await store.build('host', { onProgress: (line) => progress.push(line) })
    assert.equal(info.name, 'host')
    assert.equal(info.version, 1)
    assert.equal(info.description, "the host's /usr, read-only")
    assert.deepEqual(info.defaults, { memoryMiB: 512, cpus: 1 })
    assert.ok(info.sizeBytes > 0)
    assert.ok(progress.length > 0)

    const { info: resolved, rootfs } = await store.resolve('host')
    assert.deepEqual(resolved, info)
    assert.deepEqual(rootfs, { lowerDirs: [join(dir, 'host', '1', 'rootfs')], readonlyBinds: [{ source: '/usr', target: '/usr' }] })

    const tree = rootfs.lowerDirs[0]!
    for (const link of ['bin', 'sbin', 'lib', 'lib64']) assert.equal(await readlink(join(tree, link)), `usr/${link}`)
    assert.equal((await stat(join(tree, 'tmp'))).mode & 0o7777, 0o1777)
    assert.equal((await stat(join(tree, 'root'))).mode & 0o7777, 0o700)
    for (const d of ['usr', 'proc', 'sys', 'dev', 'home/user']) assert.ok((await stat(join(tree, d))).isDirectory(), d)
    if (process.getuid?.() === 0) assert.equal((await stat(join(tree, 'home/user'))).uid, 1000)

    const passwd = await readFile(join(tree, 'etc/passwd'), 'utf8')
    assert.match(passwd, /^root:x:0:0:/m)
    assert.match(passwd, /^user:x:1000:1000::\/home\/user:\/bin\/bash$/m)
    assert.match(passwd, /^nobody:x:65534:/m)
    assert.match(await readFile(join(tree, 'etc/group'), 'utf8'), /^user:x:1000:$/m)
    assert.equal(await readFile(join(tree, 'etc/hostname'), 'utf8'), 'sandbox\n')
    assert.match(await readFile(join(tree, 'etc/hosts'), 'utf8'), /^127\.0\.0\.1\s+localhost sandbox$/m)
    assert.equal(await readFile(join(tree, 'etc/resolv.conf'), 'utf8'), '')
    assert.match(await readFile(join(tree, 'etc/nsswitch.conf'), 'utf8'), /^passwd: files$/m)
    // Nothing of the host's /etc: no shadow file at all.
    await assert.rejects(lstat(join(tree, 'etc/shadow')), { code: 'ENOENT' })

    const stored = JSON.parse(await readFile(join(dir, 'host', '1', 'template.json'), 'utf8')) as Record<string, unknown>
    assert.equal(stored.name, 'host')
    assert.equal(stored.sizeBytes, info.sizeBytes)
    assert.equal(await readlink(join(dir, 'host', 'current')), '1')
  })

  it('is a no-op when the template exists, and makes version N+1 with force', async () => {
    const dir = await freshDir()
    const store = createTemplateStore({ dir })
    const first = await store.build('host')
    assert.deepEqual(await store.build('host'), first)

    const second = await store.build('host', { force: true })
    assert.equal(second.version, 2)
    assert.equal(await readlink(join(dir, 'host', 'current')), '2')
    assert.equal((await store.resolve('host')).rootfs.lowerDirs[0], join(dir, 'host', '2', 'rootfs'))
    // The older version stays, for rollback.
    assert.ok((await stat(join(dir, 'host', '1', 'rootfs'))).isDirectory())
    assert.deepEqual((await store.list()).map((t) => [t.name, t.version]), [['host', 2]])
    assert.deepEqual((await readdir(join(dir, 'host'))).sort(), ['1', '2', 'current'])
  })

  it('refuses to remove the base of a build in progress, and removes it once the build has ended', async () => {
    const dir = await freshDir()
    const store = createTemplateStore({ dir })
    await store.build('host')
    let release!: () => void
    const building = store.whileBuilding(async () => {
      store.holdForBuild('host')
      await new Promise<void>((resolve) => (release = resolve))
    })
    await assert.rejects(store.remove('host'), (err: unknown) => err instanceof SandstormError && err.code === 'failed_precondition' && /base of a build in progress/.test(err.message))
    assert.ok((await stat(join(dir, 'host', '1', 'rootfs'))).isDirectory(), 'the refused remove left the template')
    release()
    await building
    await store.remove('host')
    assert.deepEqual(await store.list(), [])
  })

  it('runs concurrent builds of one name one after another', async () => {
    const dir = await freshDir()
    const store = createTemplateStore({ dir })
    const [a, b] = await Promise.all([store.build('host'), store.build('host')])
    assert.deepEqual(a, b)
    const [c, d] = await Promise.all([store.build('host', { force: true }), store.build('host', { force: true })])
    assert.deepEqual([c.version, d.version].sort(), [2, 3])
    assert.deepEqual((await readdir(join(dir, 'host'))).sort(), ['1', '2', '3', 'current'])
    assert.deepEqual(await buildDirs(dir), [])
  })
})

describe('template store: listing and names', () => {
  it('lists nothing in an empty store and makes the directory', async () => {
    const dir = join(await freshDir(), 'not-yet')
    assert.deepEqual(await createTemplateStore({ dir }).list(), [])
    assert.ok((await stat(dir)).isDirectory())
  })

  it('lists built templates sorted by name and ignores version dirs without current', async () => {
    const dir = await freshDir()
    const recipes = { host: hostRecipe, alpha: { ...hostRecipe, description: 'alpha' } }
    const store = createTemplateStore({ dir, recipes })
    await store.build('host')
    await store.build('alpha')
    await mkdir(join(dir, 'orphan', '1', 'rootfs'), { recursive: true })
    assert.deepEqual((await store.list()).map((t) => t.name), ['alpha', 'host'])
  })

  it('says which templates exist when asked for an unknown one', async () => {
    const dir = await freshDir()
    const store = createTemplateStore({ dir })
    await assert.rejects(store.resolve('x'), hasCode('not_found', /unknown template "x": no template is built yet/))
    await store.build('host')
    await assert.rejects(store.resolve('x'), hasCode('not_found', /^unknown template "x": expected one of host$/))
    await assert.rejects(store.resolve('debian'), hasCode('not_found', /sandstorm template build debian/))
  })

  it('refuses names it cannot build and malformed names', async () => {
    const store = createTemplateStore({ dir: await freshDir() })
    await assert.rejects(store.build('ubuntu'), hasCode('invalid_argument', /expected one of base, code-interpreter-v1, debian, host/))
    for (const bad of ['', 'Debian', '../etc', '.hidden', 'a/b', 'x'.repeat(64)]) {
      await assert.rejects(store.build(bad), hasCode('invalid_argument', /invalid template name/))
      await assert.rejects(store.resolve(bad), hasCode('invalid_argument', /invalid template name/))
    }
  })
})

describe('template store: atomic builds', () => {
  it('leaves nothing behind when a step fails', async () => {
    const dir = await freshDir()
    const failing: TemplateRecipe = {
      ...hostRecipe,
      async build(rootfs, context) {
        await hostRecipe.build(rootfs, context)
        throw new Error('disk on fire')
      },
    }
    const store = createTemplateStore({ dir, recipes: { host: hostRecipe, broken: failing } })
    await store.build('host')
    const before = await store.list()
    await assert.rejects(store.build('broken'), hasCode('internal', /disk on fire/))
    await assert.rejects(store.build('host', { force: true, signal: AbortSignal.abort() }), hasCode('canceled'))
    assert.deepEqual(await buildDirs(dir), [])
    assert.deepEqual(await store.list(), before)
    await assert.rejects(lstat(join(dir, 'broken')), { code: 'ENOENT' })
    await assert.rejects(lstat(join(dir, '.lock-broken')), { code: 'ENOENT' })
  })

  it('removes the half-made tree when the build is aborted midway', async () => {
    const dir = await freshDir()
    const controller = new AbortController()
    let started!: () => void
    const isStarted = new Promise<void>((resolve) => (started = resolve))
    const slow: TemplateRecipe = {
      ...hostRecipe,
      async build(rootfs, context) {
        await writeFile(join(rootfs, 'partial'), 'x')
        started()
        // Waits for the cancel, as a long download would.
        await new Promise<void>((_, reject) => context.signal?.addEventListener('abort', () => reject(new Error('killed')), { once: true }))
      },
    }
    const store = createTemplateStore({ dir, recipes: { slow } })
    const building = store.build('slow', { signal: controller.signal })
    await isStarted
    assert.equal((await buildDirs(dir)).length, 1)
    controller.abort()
    await assert.rejects(building, hasCode('canceled'))
    assert.deepEqual(await buildDirs(dir), [])
    assert.deepEqual(await store.list(), [])
  })

  it('refuses a debian build with a malformed mirror before downloading anything', async () => {
    const dir = await freshDir()
    const store = createTemplateStore({ dir })
    await assert.rejects(store.build('debian', { mirror: 'ftp://example.invalid/debian' }), hasCode('invalid_argument', /mirror/))
    await assert.rejects(store.build('debian', { mirror: '--foo' }), hasCode('invalid_argument', /mirror/))
    assert.deepEqual(await buildDirs(dir), [])
  })

  it('removes stale build dirs on creation, but not those of a live build', async () => {
    const dir = await freshDir()
    await mkdir(join(dir, '.build-debian-0123abcd', 'rootfs', 'usr'), { recursive: true })
    await writeFile(join(dir, '.build-debian-0123abcd', 'rootfs', 'usr', 'f'), 'x')
    // A build that this (live) process holds the lock of.
    await mkdir(join(dir, '.build-busy-89abcdef', 'rootfs'), { recursive: true })
    await writeFile(join(dir, '.lock-busy'), `${process.pid}\n`)
    const store = createTemplateStore({ dir })
    assert.deepEqual(await store.list(), [])
    assert.deepEqual(await buildDirs(dir), ['.build-busy-89abcdef'])
  })

  it('refuses to build while another live process holds the lock, and takes over a dead one', async () => {
    const dir = await freshDir()
    const store = createTemplateStore({ dir })
    await writeFile(join(dir, '.lock-host'), `${process.pid}\n`)
    await assert.rejects(store.build('host'), hasCode('failed_precondition', new RegExp(`being built by process ${process.pid}`)))
    // A pid above the kernel's maximum (2^22) never belongs to a live process.
    await writeFile(join(dir, '.lock-host'), '99999999\n')
    assert.equal((await store.build('host')).version, 1)
    await assert.rejects(lstat(join(dir, '.lock-host')), { code: 'ENOENT' })
  })
})

describe('template store: a directory it cannot use', () => {
  it('reports the problem on first use, not as an unhandled rejection', async () => {
    const file = join(await freshDir(), 'a-file')
    await writeFile(file, '')
    const store = createTemplateStore({ dir: join(file, 'templates') })
    await assert.rejects(store.list(), hasCode('invalid_argument', /cannot use .* as the template directory/))
  })
})

describe('template store: start commands and setuid', () => {
  it('records a recipe\'s start command and setuid permission, and a golden version keeps or replaces them', async () => {
    const dir = await freshDir()
    const start = templateStartSchema.parse({ cmd: 'exec server', user: 'user', ready: { type: 'http', port: 8080 } })
    const store = createTemplateStore({ dir, recipes: { served: { ...hostRecipe, start, allowSetuid: true }, plain: hostRecipe } })
    const info = await store.build('served')
    assert.deepEqual(info.start, { cmd: 'exec server', user: 'user', env: {}, ready: { type: 'http', port: 8080, path: '/' }, readyTimeoutMs: 60_000 })
    assert.equal(info.allowSetuid, true)
    const stored = JSON.parse(await readFile(join(dir, 'served', '1', 'template.json'), 'utf8')) as { start?: unknown; allowSetuid?: boolean }
    assert.deepEqual([stored.start, stored.allowSetuid], [info.start, true])
    const { rootfs } = await store.resolve('served')
    assert.equal(rootfs.allowSetuid, true)

    const plain = await store.build('plain')
    assert.deepEqual([plain.start, plain.allowSetuid], [undefined, undefined])
    assert.equal((await store.resolve('plain')).rootfs.allowSetuid, undefined)

    // A golden version: the rootfs carries the permission, the start command is what the promote says.
    const other = templateStartSchema.parse({ cmd: 'exec other', ready: { type: 'command', cmd: 'true' } })
    const golden = await store.promote('served-golden', {
      rootfs: { ...rootfs, lowerDirs: rootfs.lowerDirs },
      defaults: { memoryMiB: 256, cpus: 1 },
      baseTemplate: 'served',
      snapshotId: 'snap-0000000000000000',
      sizeBytes: 0,
      description: 'golden',
      start: other,
    })
    assert.deepEqual([golden.start, golden.allowSetuid], [other, true])
    assert.equal((await store.resolve('served-golden')).rootfs.allowSetuid, true)
  })
})

describe('template store: fingerprints', () => {
  it('records the recipe\'s fingerprint of the finished tree in template.json, not in TemplateInfo', async () => {
    const dir = await freshDir()
    const seen: string[] = []
    const fingerprint = async (rootfs: string): Promise<string> => {
      seen.push(rootfs)
      return 'f'.repeat(64)
    }
    const store = createTemplateStore({ dir, recipes: { printed: { ...hostRecipe, fingerprint }, plain: hostRecipe } })
    const info = await store.build('printed')
    assert.equal(seen.length, 1)
    assert.match(seen[0]!, /\/\.build-printed-[0-9a-f]+\/rootfs$/)
    const stored = JSON.parse(await readFile(join(dir, 'printed', '1', 'template.json'), 'utf8')) as { fingerprint?: string }
    assert.equal(stored.fingerprint, 'f'.repeat(64))
    assert.equal('fingerprint' in info, false)
    assert.equal('fingerprint' in (await store.resolve('printed')).info, false)

    await store.build('plain')
    const plain = JSON.parse(await readFile(join(dir, 'plain', '1', 'template.json'), 'utf8')) as { fingerprint?: string }
    assert.equal(plain.fingerprint, undefined)
  })
})
