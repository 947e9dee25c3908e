/**
 * `--chown=user[:group]` (and a WORKDIR's owner) resolved to numeric ids from the image's own
 * /etc/passwd and /etc/group, read from the layer chain (never from the host, never through a
 * symlink at those paths: an image could point them at a host file).
 */
import { SandstormError } from '../../shared/index.js'
import { readChainFile } from './chain-fs.js'

/** Numeric owner of what a step writes. */
export interface Owner {
  uid: number
  gid: number
}

const maxAccountFileBytes = 4 * 1024 * 1024
const numeric = /^\d+$/
const maxId = 2 ** 32 - 2

/**
 * The ids of `spec` (`user`, `user:group`, `uid`, `uid:gid`, names or numbers) in the root made of
 * `lowerDirs`. A user without a group gets the gid equal to its uid, as Docker's COPY --chown does,
 * unless `primaryGroup` (USER's rule: the user's group in /etc/passwd).
 */
export async function resolveOwner(lowerDirs: readonly string[], spec: string, options: { primaryGroup?: boolean } = {}): Promise<Owner> {
  const [user = '', group] = spec.split(':', 2)
  const refuse = (what: string): never => {
    throw new SandstormError('invalid_argument', `owner ${JSON.stringify(spec)}: ${what}`)
  }
  let uid: number
  let gid: number | undefined
  if (numeric.test(user)) {
    uid = checkId(Number(user), refuse)
  } else {
    const passwd = await accounts(lowerDirs, 'etc/passwd')
    const entry = passwd?.get(user)
    if (!entry) return refuse(`expected a user of the image's /etc/passwd, got ${JSON.stringify(user)}${passwd ? '' : ' (the image has no /etc/passwd)'}`)
    uid = checkId(Number(entry[1]), refuse)
    if (options.primaryGroup) gid = checkId(Number(entry[2]), refuse)
  }
  if (group !== undefined) {
    if (numeric.test(group)) gid = checkId(Number(group), refuse)
    else {
      const groups = await accounts(lowerDirs, 'etc/group')
      const entry = groups?.get(group)
      if (!entry) return refuse(`expected a group of the image's /etc/group, got ${JSON.stringify(group)}${groups ? '' : ' (the image has no /etc/group)'}`)
      gid = checkId(Number(entry[1]), refuse)
    }
  }
  return { uid, gid: gid ?? uid }
}

function checkId(id: number, refuse: (what: string) => never): number {
  if (!Number.isSafeInteger(id) || id < 0 || id > maxId) refuse(`expected ids 0-${maxId}, got ${id}`)
  return id
}

/** The lines of a passwd or group file by name (the fields after the name), or null without one. */
async function accounts(lowerDirs: readonly string[], path: string): Promise<Map<string, string[]> | null> {
  const buf = await readChainFile(lowerDirs, path, maxAccountFileBytes)
  if (!buf) return null
  const out = new Map<string, string[]>()
  for (const line of buf.toString('utf8').split('\n')) {
    const fields = line.split(':')
    // The first entry of a name wins, as getpwnam reads the file.
    if (fields.length >= 3 && fields[0] && !out.has(fields[0]) && numeric.test(fields[2]!)) out.set(fields[0], fields.slice(1))
  }
  return out
}
