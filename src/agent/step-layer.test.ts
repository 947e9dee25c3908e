import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { SandstormError } from '../shared/index.js'
import { copyStepLayer } from './step-layer.js'

let work: string
let n = 0
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sandstorm-step-layer-'))
})
after(() => rm(work, { recursive: true, force: true }))

/** A step's writable layer: a 1 MiB file of data (real blocks, not a hole) and a small one. */
async function stepTop(): Promise<string> {
  const top = join(work, `top-${n++}`)
  await mkdir(join(top, 'opt'), { recursive: true })
  await writeFile(join(top, 'opt', 'big'), Buffer.alloc(1024 * 1024, 1))
  await writeFile(join(top, 'opt', 'note'), 'made by RUN\n')
  return top
}

async function freshDir(): Promise<string> {
  const dir = join(work, `layer-${n++}`)
  await mkdir(dir)
  return dir
}

describe('copyStepLayer', () => {
  it("refuses a step's layer that takes more than the room, before copying a byte, saying what it needs and what is free", async () => {
    const top = await stepTop()
    const dir = await freshDir()
    await assert.rejects(copyStepLayer(top, dir, 512 * 1024), (err: unknown) => {
      assert.ok(err instanceof SandstormError)
      assert.equal(err.code, 'resource_exhausted')
      const m = /^committing the build step's layer failed: the host's disk is full: it needs (\d+) bytes and 524288 bytes are free/.exec(err.message)
      assert.ok(m, err.message)
      assert.ok(Number(m[1]) >= 1024 * 1024, err.message)
      return true
    })
    assert.deepEqual(await readdir(dir), [], 'nothing is copied')
  })

  it('drops block and character devices, keeping overlay whiteouts (character 0/0), fifos and files', { skip: process.getuid?.() !== 0 && 'mknod needs root' }, async () => {
    const top = await stepTop()
    const odd = 'dev\nodd'
    await mkdir(join(top, odd))
    execFileSync('mknod', [join(top, 'disk'), 'b', '8', '0'])
    execFileSync('mknod', [join(top, odd, 'null'), 'c', '1', '3'])
    execFileSync('mknod', [join(top, 'opt', 'removed'), 'c', '0', '0'])
    execFileSync('mkfifo', [join(top, 'fifo')])
    const dir = await freshDir()
    await copyStepLayer(top, dir, 64 * 1024 * 1024)
    assert.deepEqual((await readdir(dir)).sort(), [odd, 'fifo', 'opt'].sort())
    assert.deepEqual(await readdir(join(dir, odd)), [])
    const whiteout = await lstat(join(dir, 'opt', 'removed'))
    assert.ok(whiteout.isCharacterDevice() && whiteout.rdev === 0, 'the whiteout stays')
    assert.ok((await lstat(join(dir, 'fifo'))).isFIFO())
    assert.equal(await readFile(join(dir, 'opt', 'note'), 'utf8'), 'made by RUN\n')
  })

  it('copies a layer that fits', async () => {
    const top = await stepTop()
    const dir = await freshDir()
    await copyStepLayer(top, dir, 64 * 1024 * 1024)
    assert.equal(await readFile(join(dir, 'opt', 'note'), 'utf8'), 'made by RUN\n')
    assert.equal((await readFile(join(dir, 'opt', 'big'))).length, 1024 * 1024)
  })
})
