/**
 * Files under /etc that every template gets, written straight into a tree that no sandbox uses
 * yet (so no chroot and no helper binaries are needed).
 */
import { appendFile, chmod, chown, copyFile, lchown, lstat, mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SandstormError, type Logger } from '../shared/index.js'
import { walkTree } from './tree.js'

/** The unprivileged user every sandbox has, as in E2B's base image. */
export const sandboxUser = { name: 'user', uid: 1000, gid: 1000, home: '/home/user', shell: '/bin/bash' } as const

/** Hostname written into every template; the runtime sets the same one in the UTS namespace. */
export const sandboxHostname = 'sandbox'

/** Writes /etc/hostname, /etc/hosts and an empty /etc/resolv.conf (sandboxes have no network). */
export async function writeNetworkFiles(rootfs: string): Promise<void> {
  const etc = join(rootfs, 'etc')
  await mkdir(etc, { recursive: true })
  await writeFile(join(etc, 'hostname'), `${sandboxHostname}\n`)
  await writeFile(join(etc, 'hosts'), `127.0.0.1\tlocalhost ${sandboxHostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`)
  // debootstrap copies the host's resolv.conf; a sandbox must not learn the host's resolvers.
  await writeFile(join(etc, 'resolv.conf'), '')
}

/**
 * Adds `user` (1000:1000) to passwd, group, shadow and gshadow where those files exist, and
 * makes its home from /etc/skel. Fails if the name or ids are taken, rather than guess.
 */
export async function addSandboxUser(rootfs: string, logger: Logger): Promise<void> {
  const u = sandboxUser
  const etc = join(rootfs, 'etc')
  const passwd = await readFile(join(etc, 'passwd'), 'utf8')
  const group = await readFile(join(etc, 'group'), 'utf8')
  if (hasEntry(passwd, u.name, u.uid)) {
    throw new SandstormError('failed_precondition', `cannot add user "${u.name}": expected no "${u.name}" and no uid ${u.uid} in /etc/passwd, found one`)
  }
  if (hasEntry(group, u.name, u.gid)) {
    throw new SandstormError('failed_precondition', `cannot add group "${u.name}": expected no "${u.name}" and no gid ${u.gid} in /etc/group, found one`)
  }
  await appendLine(join(etc, 'passwd'), passwd, `${u.name}:x:${u.uid}:${u.gid}::${u.home}:${u.shell}`)
  await appendLine(join(etc, 'group'), group, `${u.name}:x:${u.gid}:`)
  await appendIfExists(join(etc, 'shadow'), `${u.name}:!:${daysSinceEpoch()}:0:99999:7:::`)
  await appendIfExists(join(etc, 'gshadow'), `${u.name}:!::`)

  const home = join(rootfs, u.home)
  await mkdir(home, { recursive: true })
  await copySkel(join(etc, 'skel'), home)
  await chmod(home, 0o755)
  await chownTree(home, u.uid, u.gid, logger)
}

/** Is there a line for this name, or with this id in the third field? */
function hasEntry(file: string, name: string, id: number): boolean {
  return file.split('\n').some((line) => {
    const fields = line.split(':')
    return fields[0] === name || fields[2] === String(id)
  })
}

async function appendLine(path: string, content: string, line: string): Promise<void> {
  const sep = content.length > 0 && !content.endsWith('\n') ? '\n' : ''
  await appendFile(path, `${sep}${line}\n`)
}

async function appendIfExists(path: string, line: string): Promise<void> {
  let content: string
  try {
    content = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  await appendLine(path, content, line)
}

function daysSinceEpoch(): number {
  return Math.floor(Date.now() / 86_400_000)
}

/** Copies the regular files of /etc/skel (.bashrc, .profile, ...) into a new home. */
async function copySkel(skel: string, home: string): Promise<void> {
  let names: string[]
  try {
    names = await readdir(skel)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  for (const name of names) {
    const st = await lstat(join(skel, name))
    if (st.isFile()) await copyFile(join(skel, name), join(home, name))
  }
}

/**
 * Gives a directory and what it holds to uid:gid. Without root (unit tests) this cannot work;
 * the tree is still usable there, so it warns instead of failing.
 */
export async function chownTree(dir: string, uid: number, gid: number, logger: Logger): Promise<void> {
  if (process.getuid?.() !== 0) {
    logger.warn({ dir, uid, gid }, 'not root: leaving ownership as it is')
    return
  }
  await chown(dir, uid, gid)
  // lchown: a symlink in the tree must not hand some other file to the user.
  for await (const path of walkTree(dir)) await lchown(path, uid, gid)
}
