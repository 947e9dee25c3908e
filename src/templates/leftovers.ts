import { mkdir, readdir, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { SandstormError, codeOfErrno, isAlive, type Logger } from '../shared/index.js'
import { lockOwner, stagedLockPid } from './build-lock.js'
import { removeTree } from './tree.js'

/**
 * Removes `.build-*` dirs, staged `current` links and staged lock files that a crashed process
 * left, but never those of a build that a live process is running right now.
 */
export async function removeLeftovers(dir: string, logger: Logger): Promise<void> {
  try {
    await mkdir(dir, { recursive: true })
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).code
    throw new SandstormError(codeOfErrno(errno), `cannot use ${dir} as the template directory: expected a directory we can write, got ${errno}`, { cause: err })
  }
  const busy = async (name: string): Promise<boolean> => {
    const owner = await lockOwner(dir, name)
    return owner !== null && isAlive(owner)
  }
  try {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const build = /^\.build-(.+)-[0-9a-f]{8}$/.exec(entry.name)
      if (build?.[1] !== undefined && !(await busy(build[1]))) {
        logger.warn({ path: join(dir, entry.name) }, 'removing a build left by a crash')
        await removeTree(join(dir, entry.name))
        continue
      }
      const stagedPid = stagedLockPid(entry.name)
      if (stagedPid !== null && !isAlive(stagedPid)) {
        await unlink(join(dir, entry.name)).catch(() => undefined)
        continue
      }
      if (entry.isDirectory() && !entry.name.startsWith('.') && !(await busy(entry.name))) {
        for (const inner of await readdir(join(dir, entry.name))) {
          if (inner.startsWith('.current-')) await unlink(join(dir, entry.name, inner)).catch(() => undefined)
        }
      }
    }
  } catch (err) {
    // Leftovers waste space but break nothing; the store stays usable.
    logger.warn({ dir, err }, 'could not clean up leftovers of crashed builds')
  }
}
