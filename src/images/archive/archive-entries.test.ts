import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { fileOf, normalizeEntryName, type ArchiveEntries } from './archive-entries.js'

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
