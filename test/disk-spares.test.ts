/**
 * Spare disks (src/storage/layers/disk-spares.ts), on real ext4 images, loop devices and mounts:
 * what a take hands over, how the spares follow the size asked for, and that close and a crash's
 * leftovers leave no mount, loop device or file.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm, statfs, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { execa } from 'execa'
import { createDiskSpares, diskImageOf, isMounted, removeDiskImage, spareDisksDirOf, type DiskSpares } from '../src/storage/index.js'
import { loopDevicesUnder, mountsUnder } from './helpers/leftovers.js'

const skip = process.getuid?.() !== 0 ? 'spare disks need root (mkfs, loop mounts)' : false
const MiB = 1024 * 1024

/** Waits until `spares` holds `count` ready of `diskMiB` (they are made in the background). */
async function readyOf(spares: DiskSpares, diskMiB: number, count: number): Promise<void> {
  for (let i = 0; i < 600 && (spares.ready().get(diskMiB) ?? 0) < count; i++) await new Promise((r) => setTimeout(r, 50))
  assert.equal(spares.ready().get(diskMiB) ?? 0, count, `${count} spares of ${diskMiB} MiB were not made`)
}

describe('spare disks', { skip }, () => {
  let base: string
  let store: string
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'sandstorm-spares-'))
    store = join(base, 'storage')
    await mkdir(join(store, 'writable'), { recursive: true })
  })
  after(async () => {
    for (const m of (await mountsUnder(base)).reverse()) await execa('umount', ['-l', m], { reject: false })
    await rm(base, { recursive: true, force: true })
  })

  it('hands over a mounted disk of the size asked for, makes the next ones of that size, and removes all at close', async () => {
    const spares = createDiskSpares({ storeDir: store, count: 2 })
    try {
      const first = join(store, 'writable', 'a')
      await mkdir(first)
      assert.equal(await spares.take(first, 64), false, 'no spare before the first take')
      assert.equal(await isMounted(first), false, 'a take without a spare changes nothing')
      await readyOf(spares, 64, 2)
      assert.equal((await mountsUnder(spareDisksDirOf(store))).length, 2)

      const dir = join(store, 'writable', 'b')
      await mkdir(dir)
      assert.equal(await spares.take(dir, 64), true)
      assert.equal(await isMounted(dir), true, 'the spare is mounted at the writable dir')
      assert.ok(existsSync(diskImageOf(dir)), 'its image is beside the writable dir')
      const s = await statfs(dir)
      assert.ok(s.blocks * s.bsize > 48 * MiB && s.blocks * s.bsize <= 64 * MiB, `a 64 MiB filesystem, found ${s.blocks * s.bsize} bytes`)
      assert.deepEqual((await readdir(dir)).filter((n) => n !== 'lost+found'), [], 'the disk is empty')
      // The quota holds: a write past it fails with ENOSPC.
      await assert.rejects(writeFile(join(dir, 'big'), Buffer.alloc(72 * MiB, 1)), /ENOSPC/)
      assert.equal((await loopDevicesUnder(dir)).length, 1, 'its loop device names the image at its new place')
      // Refilled to 2 again.
      await readyOf(spares, 64, 2)

      // Another size: the next spares are of it, and never more than 2 wait.
      const other = join(store, 'writable', 'c')
      await mkdir(other)
      assert.equal(await spares.take(other, 40), false)
      await readyOf(spares, 40, 2)
      assert.equal(spares.ready().get(64) ?? 0, 0, 'the spares of the old size were removed')
      assert.equal((await mountsUnder(spareDisksDirOf(store))).length, 2)

      // A handed-over disk is removed as one made on the spot.
      await removeDiskImage(dir)
      assert.equal(await isMounted(dir), false)
      assert.equal(existsSync(diskImageOf(dir)), false)
    } finally {
      await spares.close()
    }
    assert.deepEqual(await mountsUnder(spareDisksDirOf(store)), [], 'close unmounted every spare')
    assert.equal(existsSync(spareDisksDirOf(store)), false, 'close removed the spare dir')
    // Deleted images free their loop devices once unmounted (autoclear).
    for (let i = 0; i < 100 && (await loopDevicesUnder(spareDisksDirOf(store))).length > 0; i++) await new Promise((r) => setTimeout(r, 50))
    assert.deepEqual(await loopDevicesUnder(spareDisksDirOf(store)), [])
  })

  it('makes spares under a steady stream of takes that never pauses for long', async () => {
    const spares = createDiskSpares({ storeDir: store, count: 2 })
    let handedOver: string | undefined
    try {
      // A take every 100 ms, each without a spare at first: no pause is as long as the quiet the
      // spares wait for, so only the bound on that wait makes any.
      for (let i = 0; i < 100 && !handedOver; i++) {
        const dir = join(store, 'writable', `steady-${i}`)
        await mkdir(dir)
        if (await spares.take(dir, 48)) handedOver = dir
        else await new Promise((r) => setTimeout(r, 100))
      }
      assert.ok(handedOver, 'no take in 10 s of takes every 100 ms found a spare')
      assert.equal(await isMounted(handedOver), true)
    } finally {
      if (handedOver) await removeDiskImage(handedOver)
      await spares.close()
    }
    assert.deepEqual(await mountsUnder(spareDisksDirOf(store)), [], 'close unmounted every spare')
  })

  it('clears spares that a crash left mounted before it makes new ones', async () => {
    // What a killed agent leaves: a mounted spare and a stray image.
    const dir = spareDisksDirOf(store)
    const left = join(dir, 'left0000')
    await mkdir(left, { recursive: true })
    await writeFile(diskImageOf(left), '')
    await execa('truncate', ['-s', '40M', diskImageOf(left)])
    await execa('mkfs.ext4', ['-q', '-F', diskImageOf(left)])
    await execa('mount', ['-o', 'loop', diskImageOf(left), left])
    await writeFile(join(dir, 'stray.disk'), 'x')
    const spares = createDiskSpares({ storeDir: store, count: 1 })
    try {
      const dirA = join(store, 'writable', 'd')
      await mkdir(dirA)
      assert.equal(await spares.take(dirA, 40), false, 'a leftover is never handed over')
      await readyOf(spares, 40, 1)
      assert.equal(existsSync(left), false, 'the leftover spare is gone')
      assert.equal(existsSync(join(dir, 'stray.disk')), false, 'the stray image is gone')
      assert.equal((await mountsUnder(dir)).length, 1, 'only the new spare is mounted')
    } finally {
      await spares.close()
    }
    assert.deepEqual(await mountsUnder(dir), [])
  })

  it('keeps none with a count of 0', async () => {
    const spares = createDiskSpares({ storeDir: store, count: 0 })
    const dir = join(store, 'writable', 'e')
    await mkdir(dir)
    assert.equal(await spares.take(dir, 40), false)
    await new Promise((r) => setTimeout(r, 300))
    assert.deepEqual(spares.ready(), new Map())
    assert.equal(existsSync(spareDisksDirOf(store)), false)
    await spares.close()
  })
})
