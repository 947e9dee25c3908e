/** The storage contract on the btrfs driver, on a btrfs loop file the test makes and removes. */
import { after } from 'node:test'
import { createBtrfsDriver } from '../src/storage/index.js'
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
