/** The storage contract on the btrfs driver, on a btrfs loop file the test makes and removes. */
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { execa } from 'execa'
import { createBtrfsDriver, enableBtrfsQuotas } from '../src/storage/index.js'
import { btrfsSkipReason, makeBtrfsLoop, type BtrfsLoop } from './helpers/btrfs-loop.js'
import { storageContract, tempBase } from './helpers/storage-contract.js'

let loop: Promise<BtrfsLoop> | undefined
after(async () => {
  if (loop) await (await loop).close()
})

storageContract('btrfs', async () => {
  const reason = await btrfsSkipReason()
  if (reason) return reason
  loop ??= makeBtrfsLoop()
  const { mountPoint } = await loop
  return { driver: createBtrfsDriver(), baseDir: () => tempBase(mountPoint) }
})

it('turns on simple quotas for a quota where the kernel has them (full qgroups made each tree-search step seconds), full qgroups where not', async (t) => {
  const reason = await btrfsSkipReason()
  if (reason) return t.skip(reason)
  // A filesystem of its own: one whose quotas are on already keeps their kind.
  const own = await makeBtrfsLoop(256)
  try {
    const driver = createBtrfsDriver()
    const path = join(await tempBase(own.mountPoint), 'sb')
    const simple = existsSync('/sys/fs/btrfs/features/simple_quota')
    await driver.makeWritable(path, null, { diskMiB: 32 })
    const uuid = (await execa('findmnt', ['-no', 'UUID', own.mountPoint])).stdout.trim()
    if (simple) assert.equal(readFileSync(`/sys/fs/btrfs/${uuid}/qgroups/mode`, 'utf8').trim(), 'squota')
    else assert.ok(existsSync(`/sys/fs/btrfs/${uuid}/qgroups`), 'quotas are on (full qgroups: this kernel has no simple quotas)')
    assert.equal((await driver.usage(path))?.limitBytes, 32 * 1024 * 1024)
    // What setup prints comes from the kernel's word, also for a filesystem with full qgroups on.
    assert.equal(await enableBtrfsQuotas(own.mountPoint), simple ? 'simple' : 'full')
    await driver.remove(path)
    const full = await makeBtrfsLoop(256)
    try {
      await execa('btrfs', ['quota', 'enable', full.mountPoint])
      assert.equal(await enableBtrfsQuotas(full.mountPoint), 'full')
    } finally {
      await full.close()
    }
  } finally {
    await own.close()
  }
})
