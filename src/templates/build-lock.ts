/**
 * A lock per template name, so that two processes never build the same template at once. The lock
 * is a file holding the owner's pid, put in place with link(2), which fails if the name exists
 * (as O_EXCL does) and, unlike O_EXCL, never shows another process a lock that is still empty.
 * A lock whose owner is gone (a crash) is taken over; two processes that both find the same dead
 * lock at the same instant could both take it, which needs a crash and a race at once.
 */
import { randomBytes } from 'node:crypto'
import { link, readFile, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isAlive, SandstormError } from '../shared/index.js'

/** A held lock; release is safe to call twice. */
export interface BuildLock {
  release(): Promise<void>
}

/** Path of the lock file of a template name. */
export function lockPath(dir: string, name: string): string {
  return join(dir, `.lock-${name}`)
}

/** Where a lock is written before it is linked into place; the pid comes first, so it parses. */
function stagedLockPath(dir: string, name: string): string {
  return join(dir, `.lockstage-${process.pid}-${randomBytes(4).toString('hex')}-${name}`)
}

/** Pid in the name of a staged lock file (left behind only by a crash), or null for other names. */
export function stagedLockPid(fileName: string): number | null {
  const match = /^\.lockstage-([0-9]+)-/.exec(fileName)
  return match?.[1] === undefined ? null : Number(match[1])
}

/** Takes the lock of `name`, or fails with failed_precondition if a live process holds it. */
export async function acquireBuildLock(dir: string, name: string): Promise<BuildLock> {
  const path = lockPath(dir, name)
  // Two tries: the second after removing a lock left behind by a dead process.
  for (let attempt = 0; attempt < 2; attempt++) {
    const staged = stagedLockPath(dir, name)
    await writeFile(staged, `${process.pid}\n`)
    try {
      await link(staged, path)
      let released = false
      return {
        async release() {
          if (released) return
          released = true
          await unlink(path).catch(() => undefined)
        },
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    } finally {
      await unlink(staged).catch(() => undefined)
    }
    const owner = await lockOwner(dir, name)
    if (owner !== null && isAlive(owner)) {
      throw new SandstormError(
        'failed_precondition',
        `template "${name}" is being built by process ${owner}; wait for it to finish (or remove ${path} if no build runs)`,
      )
    }
    await unlink(path).catch(() => undefined)
  }
  throw new SandstormError('failed_precondition', 'could not take the template build lock: another build keeps taking it', { cause: new Error(path) })
}

/** Pid that holds the lock of `name`, or null when there is no lock or it cannot be read. */
export async function lockOwner(dir: string, name: string): Promise<number | null> {
  try {
    const pid = Number.parseInt(await readFile(lockPath(dir, name), 'utf8'), 10)
    return Number.isInteger(pid) && pid > 0 ? pid : null
  } catch {
    return null
  }
}

