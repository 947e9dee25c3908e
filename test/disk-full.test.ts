/**
 * A full disk: a `sandstorm up` whose data dir (and templates dir) sit on a small ext4 loop
 * filesystem that the test fills. Snapshot, template build, file upload and create then fail with
 * `resource_exhausted` and a message that says the disk is full and names no host path; none of
 * them leaves anything half made (no snapshot row or layer, no template version, no catalog row,
 * writable layer, loop device or mount). A snapshot that would eat into the free margin the
 * sandboxes' sparse disks need is refused before it copies. The server goes on answering. Once
 * the filler is deleted, all four work again.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, open, rm, statfs, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { execa, type ResultPromise } from 'execa'
import { hostMarginBytes } from '../src/storage/index.js'
import type { TemplateBuildEvent } from '../src/shared/index.js'
import { Sandbox } from '@sandstorm/sdk'
import { leftoversOf, loopDevicesUnder, mountsUnder, namesIn, onSpareDisk } from './helpers/leftovers.js'
import { ownTemplatesDir, startUpProcess } from './helpers/fleet-processes.js'
import { skipReason } from './helpers/stack.js'

const skip = skipReason() ?? false
const MiB = 1024 ** 2
/** Words a disk-full message must hold, and what it must never show: host paths and errno text. */
const diskFull = /disk is full|no space left/i
const leaky = /\/tmp\/|\/mnt|sandstorm-diskfull|\.disk\b|storage\/|ENOSPC|errno|SQLITE/i

/** Mount points at or under `dir`, deepest first. */
const mountsDeepestFirst = async (dir: string): Promise<string[]> => [...new Set(await mountsUnder(dir))].sort((a, b) => b.length - a.length)

/**
 * Fills the filesystem of `path` to its last block: a large preallocation, then appends until
 * ENOSPC. What the sandboxes wrote is synced first: a sandbox's disk is a sparse image, and its
 * dirty blocks could not be written back to a full host (see src/agent/host-space.ts).
 */
async function fill(path: string): Promise<void> {
  await execa('sync')
  const s = await statfs(join(path, '..'))
  let bytes = Math.max(0, s.bavail * s.bsize - 2 * MiB)
  while (bytes > 0 && (await execa('fallocate', ['-l', String(bytes), path], { reject: false })).exitCode !== 0) bytes -= 4 * MiB
  const file = await open(path, 'a')
  try {
    for (const size of [MiB, 64 * 1024, 4096, 1024]) {
      const block = Buffer.alloc(size, 1)
      for (;;) {
        try {
          await file.write(block)
          await file.sync()
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break
          throw err
        }
      }
    }
  } finally {
    await file.close()
  }
  await execa('sync')
}

describe('a full data disk', { skip, timeout: 900_000 }, () => {
  let base: string
  let mnt: string
  let dataDir: string
  let templatesDir: string
  let filler: string
  let up: ResultPromise
  let conn: { apiUrl: string; apiKey: string }
  let sbx: Sandbox

  const call = async (method: string, path: string, body?: unknown, raw?: Buffer): Promise<{ status: number; json: any; text: string }> => {
    const headers: Record<string, string> = { authorization: `Bearer ${conn.apiKey}` }
    if (body !== undefined) headers['content-type'] = 'application/json'
    const res = await fetch(`${conn.apiUrl}${path}`, { method, headers, body: raw ? new Uint8Array(raw) : body === undefined ? undefined : JSON.stringify(body) })
    const text = await res.text()
    let json: any
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    return { status: res.status, json, text }
  }
  /** Builds template `name` from debian with one step; resolves every event of the NDJSON stream. */
  const build = async (name: string): Promise<TemplateBuildEvent[]> => {
    const res = await call('POST', `/v1/templates/${name}/build`, { from: 'debian', steps: ['echo built > /built'] })
    assert.equal(res.status, 200, res.text)
    return res.text.trim().split('\n').map((l) => JSON.parse(l) as TemplateBuildEvent)
  }
  const upload = (path: string, bytes: number) => call('PUT', `/v1/sandboxes/${sbx.sandboxId}/files?path=${encodeURIComponent(path)}`, undefined, Buffer.alloc(bytes, 0x61))
  const create = () => call('POST', '/v1/sandboxes', { template: 'debian', network: 'none', diskMiB: 64 })
  /** What each operation could leave behind, to compare before and after a failure. */
  const state = async () => ({
    sandboxRows: ((await call('GET', '/v1/sandboxes')).json as { id: string }[]).map((s) => s.id).sort(),
    snapshotRows: ((await call('GET', '/v1/snapshots')).json as { id: string }[]).map((s) => s.id).sort(),
    layers: await namesIn(join(dataDir, 'storage', 'layers')),
    writable: await namesIn(join(dataDir, 'storage', 'writable')),
    sandboxDirs: await namesIn(join(dataDir, 'sandboxes')),
    agentRecords: await namesIn(join(dataDir, 'agent', 'sandboxes')),
    runc: await namesIn(join(dataDir, 'runc')),
    templates: await namesIn(templatesDir),
    loops: (await loopDevicesUnder(mnt)).length,
    // Spare disks come and go on their own (made once creates pause): they are not what a refused request left.
    mounts: (await mountsDeepestFirst(mnt)).filter((m) => !onSpareDisk(m)).length,
  })
  const assertDiskFull = (what: string, res: { status: number; json: any; text: string }): void => {
    assert.equal(res.status, 429, `${what}: ${res.text}`)
    assert.equal(res.json?.code, 'resource_exhausted', `${what}: ${res.text}`)
    assert.match(res.json.message, diskFull, `${what}: ${res.text}`)
    assert.doesNotMatch(res.json.message, leaky, `${what}: ${res.text}`)
  }

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'sandstorm-diskfull-'))
    mnt = join(base, 'mnt')
    await mkdir(mnt)
    await execa('truncate', ['-s', '512M', join(base, 'fs.img')])
    // No blocks reserved for root: the server runs as root and must meet the same full disk.
    await execa('mkfs.ext4', ['-q', '-F', '-m', '0', join(base, 'fs.img')])
    await execa('mount', ['-o', 'loop', join(base, 'fs.img'), mnt])
    dataDir = join(mnt, 'data')
    // Its own templates dir on the small filesystem: a build's new version lands on the full disk.
    templatesDir = await ownTemplatesDir(join(mnt, 'templates'))
    filler = join(mnt, 'filler')
    ;({ child: up, conn } = await startUpProcess(dataDir, ['--templates-dir', templatesDir, '--default-disk', '64M']))
    sbx = await Sandbox.create('debian', { ...conn, network: 'none', diskMiB: 64 })
    // Something for a snapshot to copy, written through to the host before the disk fills.
    assert.equal((await sbx.commands.run('head -c 4M /dev/urandom > /root/seed && sync && echo ok')).stdout, 'ok\n')
    await execa('sync')
  })

  after(async () => {
    if (conn) {
      const listed = await call('GET', '/v1/sandboxes').catch(() => undefined)
      for (const s of (listed?.json as { id: string }[] | undefined) ?? []) await call('DELETE', `/v1/sandboxes/${s.id}`).catch(() => undefined)
    }
    if (up) {
      up.kill('SIGTERM')
      await up
    }
    if (!mnt) return
    // Whatever a failed run left: containers, then mounts deepest first, then loop devices.
    for (const id of await namesIn(join(dataDir, 'runc'))) await execa('runc', ['--root', join(dataDir, 'runc'), 'delete', '--force', id], { reject: false })
    for (const point of await mountsDeepestFirst(mnt)) if (point !== mnt) await execa('umount', ['-l', point], { reject: false })
    for (const loop of await loopDevicesUnder(mnt)) await execa('losetup', ['-d', `/dev/${loop.split(' ')[1]}`], { reject: false })
    await execa('umount', [mnt], { reject: false })
    if ((await mountsDeepestFirst(mnt)).length > 0) await execa('umount', ['-l', mnt], { reject: false })
    for (const loop of await loopDevicesUnder(base)) await execa('losetup', ['-d', `/dev/${loop.split(' ')[1]}`], { reject: false })
    await rm(base, { recursive: true, force: true })
  })

  it('refuses snapshot, build, upload and create with resource_exhausted, leaving nothing half made, and goes on serving', async () => {
    const before = await state()
    const rootFiles = async () => (await sbx.commands.run('ls -A /root')).stdout
    const filesBefore = await rootFiles()
    const freeBytes = async () => {
      const s = await statfs(mnt)
      return s.bavail * s.bsize
    }
    /** Fills the disk but for `bytes`. */
    const leaveFree = async (bytes: number) => {
      const slack = join(mnt, 'slack')
      await writeFile(slack, Buffer.alloc(bytes, 1))
      await fill(filler)
      await rm(slack)
      await execa('sync')
      assert.ok((await freeBytes()) >= bytes - Math.min(bytes / 2, MiB / 2), `expected about ${bytes} bytes free, got ${await freeBytes()}`)
    }

    // Room for 2 MiB past what an upload leaves free: an 8 MiB upload is cut off as it streams.
    await leaveFree(hostMarginBytes + 2 * MiB)
    assertDiskFull('upload past the free space', await upload('/root/upload.bin', 8 * MiB))
    assert.equal(await rootFiles(), filesBefore, 'no partial upload is left')
    // The same room is too little for a snapshot to copy the 4 MiB seed without eating into the
    // margin the sandboxes' sparse disks need: refused before a byte is copied.
    assertDiskFull('snapshot into the margin', await call('POST', `/v1/sandboxes/${sbx.sandboxId}/snapshots`, { label: 'into the margin' }))
    assert.deepEqual(await state(), before)

    // About 1 MiB left: a snapshot starts, and its copy of the 4 MiB seed runs out of space.
    await leaveFree(MiB)
    assertDiskFull('snapshot with 1 MiB free', await call('POST', `/v1/sandboxes/${sbx.sandboxId}/snapshots`, { label: 'on a nearly full disk' }))
    assert.deepEqual(await state(), before)

    // About 256 KiB left: room for the catalog's row, not for the new sandbox's disk image.
    await leaveFree(256 * 1024)
    assertDiskFull('create with 256 KiB free', await create())
    assert.deepEqual(await state(), before)

    // Then nothing left at all.
    await fill(filler)
    assert.ok((await freeBytes()) < 64 * 1024, `expected the filesystem full, got ${await freeBytes()} bytes free`)
    assertDiskFull('snapshot', await call('POST', `/v1/sandboxes/${sbx.sandboxId}/snapshots`, { label: 'on a full disk' }))

    const events = await build('made-on-full')
    const last = events.at(-1)!
    assert.equal(last.type, 'error', JSON.stringify(last))
    assert.equal(last.type === 'error' && last.code, 'resource_exhausted', JSON.stringify(last))
    assert.match(last.type === 'error' ? last.message : '', diskFull, JSON.stringify(last))
    assert.doesNotMatch(last.type === 'error' ? last.message : '', leaky, JSON.stringify(last))

    assertDiskFull('upload', await upload('/root/upload.bin', 8 * MiB))
    assert.equal(await rootFiles(), filesBefore, 'no partial upload is left')

    assertDiskFull('create', await create())

    // Nothing half made: the same rows, layers, writable dirs, templates, loop devices and mounts.
    assert.deepEqual(await state(), before)
    assert.ok(!existsSync(join(templatesDir, 'made-on-full', 'current')), 'no version of the failed build')
    // The server still serves: lists, and runs a command in the sandbox it had.
    assert.equal((await call('GET', '/healthz')).status, 200)
    assert.deepEqual(((await call('GET', '/v1/sandboxes')).json as { id: string }[]).map((s) => s.id), [sbx.sandboxId])
    assert.equal((await sbx.commands.run('echo alive')).stdout, 'alive\n')
    assert.equal((await sbx.commands.run('sha256sum /root/seed >/dev/null && echo readable')).stdout, 'readable\n')
  })

  it('works again once space is freed: snapshot, build, upload and create', async () => {
    await rm(filler, { force: true })
    await execa('sync')

    const snap = await call('POST', `/v1/sandboxes/${sbx.sandboxId}/snapshots`, { label: 'after freeing' })
    assert.equal(snap.status, 201, snap.text)

    const last = (await build('made-after')).at(-1)!
    assert.equal(last.type, 'done', JSON.stringify(last))
    assert.ok(existsSync(join(templatesDir, 'made-after', 'current')))

    assert.equal((await upload('/root/upload.bin', 8 * MiB)).status, 204)
    assert.equal((await sbx.commands.run('stat -c %s /root/upload.bin')).stdout, `${8 * MiB}\n`)

    const made = await create()
    assert.equal(made.status, 201, made.text)
    const id = (made.json as { id: string }).id
    assert.equal((await call('DELETE', `/v1/sandboxes/${id}`)).status, 204)
    assert.deepEqual(await leftoversOf(dataDir, id), [])
  })
})
