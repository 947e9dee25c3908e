import assert from 'node:assert/strict'
import { link, mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { removeTree, treeSizeBytes, walkTree } from './tree.js'

let root: string
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'sandstorm-tree-'))
})
after(async () => {
  await rm(root, { recursive: true, force: true })
})

describe('treeSizeBytes', () => {
  it('sums files and symlinks, counting a hard-linked file once', async () => {
    const dir = join(root, 'sized')
    await mkdir(join(dir, 'a/b'), { recursive: true })
    await writeFile(join(dir, 'one'), 'x'.repeat(100))
    await writeFile(join(dir, 'a/b/two'), 'y'.repeat(20))
    await link(join(dir, 'one'), join(dir, 'a/one-again'))
    await symlink('a/b/two', join(dir, 'link')) // 7 bytes of target
    assert.equal(await treeSizeBytes(dir), 127)
  })
})

describe('removeTree', () => {
  it('removes a tree and is safe to call twice', async () => {
    const dir = join(root, 'gone')
    await mkdir(join(dir, 'x/y'), { recursive: true })
    await writeFile(join(dir, 'x/y/f'), 'z')
    await removeTree(dir)
    await removeTree(dir)
    await assert.rejects(stat(dir), { code: 'ENOENT' })
  })
})

describe('walkTree', () => {
  it('does not follow symlinks to directories', async () => {
    const dir = join(root, 'walk')
    await mkdir(join(dir, 'd'), { recursive: true })
    await writeFile(join(dir, 'd/f'), '')
    await symlink('/proc/self', join(dir, 'escape'))
    const seen: string[] = []
    for await (const path of walkTree(dir)) seen.push(path.slice(dir.length + 1))
    assert.deepEqual(seen.sort(), ['d', 'd/f', 'escape'])
  })
})
