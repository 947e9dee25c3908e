/**
 * Squashing a sandbox's snapshot layers, where the sandbox chose every name: a name that is no
 * UTF-8 and a link named U+FFFD (what such a name decodes to) must stay two entries. A walk by
 * decoded names took the one for the other, cleared a host directory's entries through the link
 * and set an overlay mark on a host directory as root.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { lstat, mkdir, mkdtemp, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { squashLayers } from '../src/storage/layers/squash.js'

const skip = process.getuid?.() !== 0 ? 'squashing needs root (overlay marks are trusted xattrs)' : false

/** A path of `dir` and byte names. */
const at = (dir: string, ...names: (string | Buffer)[]): Buffer => Buffer.concat([Buffer.from(dir), ...names.flatMap((n) => [Buffer.from('/'), Buffer.from(n)])])
const replacement = '\u{FFFD}'
const ff = Buffer.of(0xff)

/** Whether a path has the overlay's opaque mark (never following a link). */
function markedOpaque(path: string): boolean {
  try {
    return execFileSync('getfattr', ['-h', '--only-values', '-n', 'trusted.overlay.opaque', path], { stdio: ['ignore', 'pipe', 'ignore'] }).toString() === 'y'
  } catch {
    return false
  }
}

describe('squashing layers whose names are no UTF-8', { skip }, () => {
  let root: string
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'sandstorm-squash-names-'))
  })
  after(async () => {
    await rm(root, { recursive: true, force: true })
  })

  it('never reaches through a link named U+FFFD for a dir named \\xff', async () => {
    // A host directory the sandbox aims at, with a subdir and a file.
    const host = join(root, 'host')
    await mkdir(join(host, 'sub'), { recursive: true })
    await writeFile(join(host, 'keep'), 'host data')
    // The older layer: a real dir named U+FFFD holding files named like the host's entries.
    const older = join(root, 'older')
    await mkdir(join(older, 't', replacement), { recursive: true })
    await writeFile(join(older, 't', replacement, 'sub'), 'a file where the host has a dir')
    await writeFile(join(older, 't', replacement, 'keep'), 'planted')
    // The newer layer: the U+FFFD dir is now a link to the host directory, beside a dir \xff whose
    // entries name the host's.
    // Many such dirs (each lone byte from 0x80 is no UTF-8): whatever order the directory lists
    // its entries in, some come before the link.
    const newer = join(root, 'newer')
    for (let byte = 0x80; byte <= 0xff; byte++) await mkdir(at(newer, 't', Buffer.of(byte), 'sub'), { recursive: true })
    await writeFile(at(newer, 't', ff, 'keep'), 'the sandbox\'s own')
    await symlink(host, join(newer, 't', replacement))

    const dest = join(root, 'squashed')
    await squashLayers([newer, older], dest)

    // The host directory is as it was: nothing removed from it, no mark set on it.
    assert.deepEqual((await readdir(host)).sort(), ['keep', 'sub'])
    assert.equal(markedOpaque(join(host, 'sub')), false, 'an overlay mark was set on a host directory')
    assert.equal(markedOpaque(host), false)
    // The squashed layer shows the newer layer over the older: the link, and the \xff dir whole.
    assert.equal(await readlink(join(dest, 't', replacement)), host)
    assert.ok((await lstat(at(dest, 't', ff, 'sub'))).isDirectory())
    const names = (await readdir(at(dest, 't'), { encoding: 'buffer' })).map((n) => n.toString('hex')).sort()
    assert.equal(names.length, 129)
    assert.ok(names.includes('efbfbd') && names.includes('80') && names.includes('ff'))
  })

  it('still clears and marks what a layer replaces', async () => {
    const older = join(root, 'older2')
    await mkdir(join(older, 'd'), { recursive: true })
    await writeFile(join(older, 'd', 'old'), 'x')
    await writeFile(join(older, 'f'), 'a file')
    const newer = join(root, 'newer2')
    // d replaced by a file; f replaced by a dir (which hides nothing below, so it is made opaque).
    await mkdir(join(newer, 'f'), { recursive: true })
    await writeFile(join(newer, 'f', 'inside'), 'y')
    await writeFile(join(newer, 'd'), 'now a file')
    const dest = join(root, 'squashed2')
    await squashLayers([newer, older], dest)
    assert.ok((await lstat(join(dest, 'd'))).isFile())
    assert.ok((await lstat(join(dest, 'f'))).isDirectory())
    assert.deepEqual(await readdir(join(dest, 'f')), ['inside'])
    assert.equal(markedOpaque(join(dest, 'f')), true, 'a dir laid over a file is opaque')
  })
})
