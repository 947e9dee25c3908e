/** Removing a directory tree on the host, whatever a sandbox or a build made of it. */
import { execFile } from 'node:child_process'
import { rm } from 'node:fs/promises'
import { promisify } from 'node:util'
import { SandstormError } from './errors.js'

const run = promisify(execFile)

/**
 * Removes `path` and everything under it, as `rm -rf` does: links are unlinked, never followed,
 * and a missing path is no error. `fs.rm` works by whole paths and fails with ENAMETOOLONG on a
 * tree deeper than a path can name, which a sandbox makes with a loop of `mkdir d && cd d`: there
 * GNU rm, which walks by directory fds, takes over, kept on the tree's own filesystem.
 */
export async function removeAll(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENAMETOOLONG') throw err
    await run('rm', ['-rf', '--one-file-system', '--', path]).catch((failed: Error & { stderr?: string }) => {
      throw new SandstormError('internal', `removing a deep tree failed: expected rm -rf to succeed, got ${failed.stderr?.trim().split('\n')[0] || failed.message}`)
    })
  }
}
