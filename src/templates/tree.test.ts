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
    for await (const path of walkTree(dir)) seen.push(path.toString().slice(dir.length + 1))
    assert.deepEqual(seen.sort(), ['d', 'd/f', 'escape'])
  })

  it('takes a name that is no UTF-8 for itself, never for the link named U+FFFD beside it', async () => {
    // Decoded, the dir's name \xff reads as U+FFFD, which names the link: a walk by decoded
    // names went through the link, out of the tree.
    const dir = join(root, 'bytes')
    const outside = join(root, 'outside')
    await mkdir(outside, { recursive: true })
    await writeFile(join(outside, 'secret'), 's'.repeat(1000))
    const base = Buffer.from(dir)
    const named = (...parts: (string | Buffer)[]) => Buffer.concat([base, ...parts.flatMap((p) => [Buffer.from('/'), Buffer.from(p)])])
    await mkdir(named(Buffer.of(0xff)), { recursive: true })
    await writeFile(named(Buffer.of(0xff), 'mine'), 'm'.repeat(10))
    await symlink(outside, named('\u{FFFD}'))
    const seen: string[] = []
    for await (const path of walkTree(dir)) seen.push(path.subarray(base.length + 1).toString('hex'))
    assert.deepEqual(seen.sort(), ['efbfbd', 'ff', 'ff2f6d696e65'])
    // The dir's own file and the link (its target's length), not the file beyond the link.
    assert.equal(await treeSizeBytes(dir), 10 + Buffer.byteLength(outside))
  })
})
