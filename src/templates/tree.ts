/** Measuring and removing directory trees that a build made. */
import { lstat, readFile, readdir } from 'node:fs/promises'
import { resolve } from 'node:path'
import { runOrThrow } from '../shared/run-process.js'
import { removeAll } from '../shared/remove-all.js'

/**
 * Every path below `dir`, parents before children, as bytes. It never follows a symlink: a tree
 * from debootstrap links /dev/fd to /proc/self/fd, and `readdir({ recursive: true })` of Node 20
 * walks through such links. Names are kept as bytes: decoded, every name that is no UTF-8 reads as
 * U+FFFD, so a dir named with such a byte would be walked as the entry named U+FFFD, a link to
 * anywhere that the tree's maker (a build step, a sandbox) put beside it.
 */
export async function* walkTree(dir: string | Buffer): AsyncGenerator<Buffer> {
  const base = Buffer.isBuffer(dir) ? dir : Buffer.from(dir)
  for (const entry of await readdir(base, { withFileTypes: true, encoding: 'buffer' })) {
    const path = Buffer.concat([base, slash, entry.name])
    yield path
    if (entry.isDirectory()) yield* walkTree(path)
  }
}

const slash = Buffer.from('/')

/** Sum of the sizes of the regular files and symlinks under `dir`, each hard-linked inode once. */
export async function treeSizeBytes(dir: string): Promise<number> {
  const seen = new Set<string>()
  let total = 0
  for await (const path of walkTree(dir)) {
    const st = await lstat(path)
    if (!st.isFile() && !st.isSymbolicLink()) continue
    if (st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`
      if (seen.has(key)) continue
      seen.add(key)
    }
    total += st.size
  }
  return total
}

/**
 * Removes a tree that a build may have left half made. debootstrap mounts /proc and /sys inside
 * its target and a killed run leaves them mounted; a recursive delete would walk into them, so
 * every mount below `dir` is detached first, deepest first.
 */
export async function removeTree(dir: string): Promise<void> {
  const mounts = await mountsUnder(dir)
  for (const mountPoint of mounts) await runOrThrow('umount', ['-l', mountPoint], `detaching ${mountPoint}`)
  await removeAll(dir)
}

/** Mount points strictly below `dir`, deepest first. */
async function mountsUnder(dir: string): Promise<string[]> {
  let table: string
  try {
    table = await readFile('/proc/self/mountinfo', 'utf8')
  } catch {
    return []
  }
  const prefix = `${resolve(dir)}/`
  const found: string[] = []
  for (const line of table.split('\n')) {
    const field = line.split(' ')[4]
    if (field === undefined) continue
    const mountPoint = unescapeMountinfo(field)
    if (mountPoint.startsWith(prefix)) found.push(mountPoint)
  }
  return found.sort((a, b) => b.length - a.length)
}

/** mountinfo writes space, tab, newline and backslash as octal escapes such as `\040`. */
function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)))
}
