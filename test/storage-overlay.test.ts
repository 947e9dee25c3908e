/** The storage contract on the overlay driver, in a temp dir on the default filesystem. */
import { tmpdir } from 'node:os'
import { createOverlayDriver } from '../src/storage/index.js'
import { storageContract, tempBase } from './helpers/storage-contract.js'

storageContract('overlay', async () => {
  if (process.getuid?.() !== 0) return 'storage tests need root (overlay mounts, whiteouts)'
  return { driver: createOverlayDriver(), baseDir: () => tempBase(tmpdir()) }
})
