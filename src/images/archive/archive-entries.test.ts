import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { gzipSync } from 'node:zlib'
import { pack } from 'tar-stream'
import { SandstormError } from '../../shared/index.js'
import { fileOf, normalizeEntryName, readArchiveEntries, type ArchiveEntries } from './archive-entries.js'

/** A tar of these entries, in memory. */
async function tarOf(entries: { name: string; type?: 'file' | 'symlink'; body?: Buffer; linkname?: string }[]): Promise<Buffer> {
  const p = pack()
  const chunks: Buffer[] = []
  p.on('data', (c: unknown) => void chunks.push(c as Buffer))
  const ended = new Promise<void>((resolve) => p.on('end', () => resolve()))
  for (const e of entries) {
    if (e.type === 'symlink') p.entry({ name: e.name, type: 'symlink', linkname: e.linkname ?? 'x' })
    else p.entry({ name: e.name, size: e.body?.length ?? 0 }, e.body ?? Buffer.alloc(0))
  }
  p.finalize()
  await ended
  return Buffer.concat(chunks)
}

/** Reads `archive` (written to a file) with these limits; returns what is left in the copy dir too. */
async function read(archive: Buffer, limits: Parameters<typeof readArchiveEntries>[3] = {}): Promise<{ result: Promise<ArchiveEntries>; dir: string; done(): Promise<void> }> {
  const work = await mkdtemp(join(tmpdir(), 'sandstorm-archive-'))
  const dir = join(work, 'out')
  await mkdir(dir)
  await writeFile(join(work, 'a.tar'), archive)
  const result = readArchiveEntries(join(work, 'a.tar'), dir, undefined, limits)
  result.catch(() => undefined)
  return { result, dir, done: () => rm(work, { recursive: true, force: true }) }
}

describe('readArchiveEntries under its limits', () => {
  it('stops a gzipped archive that unpacks past its bound, having written little more than the bound', async () => {
    const bomb = gzipSync(await tarOf([{ name: 'layer.tar', body: Buffer.alloc(8 * 1024 * 1024) }]))
    assert.ok(bomb.length < 64 * 1024, 'the test archive is small')
    const r = await read(bomb, { maxBytes: 1024 * 1024 })
    try {
      await assert.rejects(r.result, (err: unknown) => err instanceof SandstormError && err.code === 'resource_exhausted' && /unpacks to more than 1048576 bytes/.test(err.message))
      let written = 0
      for (const name of await readdir(r.dir)) written += (await stat(join(r.dir, name))).size
      assert.ok(written <= 2 * 1024 * 1024, `wrote ${written} bytes`)
    } finally {
      await r.done()
    }
  })

  it('refuses names and link targets longer than a path can be, and more entries than allowed', async () => {
    const long = await read(await tarOf([{ name: `a/${'x'.repeat(8192)}`, type: 'symlink', linkname: 'b' }]))
    const target = await read(await tarOf([{ name: 'a', type: 'symlink', linkname: 'y'.repeat(8192) }]))
    const many = await read(await tarOf(Array.from({ length: 20 }, (_, i) => ({ name: `f${i}` }))), { maxEntries: 10 })
    try {
      await assert.rejects(long.result, /expected entry names and link targets of at most 4096 bytes, got one of 8194/)
      await assert.rejects(target.result, /at most 4096 bytes, got one of 8192/)
      await assert.rejects(many.result, /expected at most 10 entries/)
      const fine = await read(await tarOf([{ name: 'manifest.json', body: Buffer.from('[]') }, { name: 'link', type: 'symlink', linkname: 'manifest.json' }]))
      try {
        const entries = await fine.result
        assert.equal(fileOf(entries, 'link')?.sizeBytes, 2)
      } finally {
        await fine.done()
      }
    } finally {
      await Promise.all([long.done(), target.done(), many.done()])
    }
  })
})

describe('normalizeEntryName', () => {
  it('normalizes names and drops those that climb out', () => {
    assert.equal(normalizeEntryName('./a//b/./c/'), 'a/b/c')
    assert.equal(normalizeEntryName('/abs/x'), 'abs/x')
    assert.equal(normalizeEntryName('a/../../etc/passwd'), undefined)
    assert.equal(normalizeEntryName('..'), undefined)
    assert.equal(normalizeEntryName('./'), undefined)
  })
})

describe('fileOf', () => {
  it('follows links between entries, and gives up on loops', () => {
    const file = { path: '/tmp/x/entry-0', sizeBytes: 1, digest: `sha256:${'a'.repeat(64)}` as const }
    const entries: ArchiveEntries = {
      files: new Map([['a/layer.tar', file]]),
      links: new Map([
        ['b/layer.tar', 'a/layer.tar'],
        ['c/layer.tar', 'b/layer.tar'],
        ['loop1', 'loop2'],
        ['loop2', 'loop1'],
      ]),
    }
    assert.equal(fileOf(entries, './c/layer.tar'), file)
    assert.equal(fileOf(entries, 'loop1'), undefined)
    assert.equal(fileOf(entries, 'absent'), undefined)
  })
})
