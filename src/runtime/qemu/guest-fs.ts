/**
 * File operations inside the guest as busybox scripts run by the guest agent (arguments as "$1",
 * never spliced), and their output parsed into entries.
 */
import { codeOfErrno, SandstormError, type EntryInfo, type EntryType } from '../../shared/index.js'
import { guestBusybox as bb } from './guest-scripts.js'

const statFormat = `'%f %s %Y %u %g'`

/** One script per operation. */
export const guestFsScripts = {
  stat: `exec ${bb} stat -c ${statFormat} -- "$1"`,
  list: [
    `[ -d "$1" ] || { [ -e "$1" ] && echo "ls: $1: Not a directory" >&2 || echo "ls: $1: No such file or directory" >&2; exit 1; }`,
    `cd -- "$1" || exit 1`,
    `for f in .* *; do case "$f" in .|..) continue;; esac; [ -e "$f" ] || [ -L "$f" ] || continue`,
    `${bb} stat -c ${statFormat} -- "$f" || continue; printf '%s\\0' "$f"; done`,
  ].join('\n'),
  mkdir: `exec ${bb} mkdir -- "$1"`,
  mkdirParents: `[ -e "$1" ] && [ ! -d "$1" ] && { echo "mkdir: $1: File exists" >&2; exit 1; }; exec ${bb} mkdir -p -- "$1"`,
  parentOf: `exec ${bb} mkdir -p -- "$(${bb} dirname -- "$1")"`,
  remove: [
    `[ -e "$1" ] || [ -L "$1" ] || { echo "rm: $1: No such file or directory" >&2; exit 1; }`,
    `if [ -d "$1" ] && [ ! -L "$1" ]; then exec ${bb} rmdir -- "$1"; else exec ${bb} rm -f -- "$1"; fi`,
  ].join('\n'),
  removeRecursive: `[ -e "$1" ] || [ -L "$1" ] || { echo "rm: $1: No such file or directory" >&2; exit 1; }; exec ${bb} rm -rf -- "$1"`,
  rename: [
    `[ -e "$1" ] || [ -L "$1" ] || { echo "mv: $1: No such file or directory" >&2; exit 1; }`,
    `[ -d "$2" ] && [ ! -L "$2" ] && { echo "mv: $2: File exists" >&2; exit 1; }`,
    `exec ${bb} mv -f -- "$1" "$2"`,
  ].join('\n'),
  resolveUser: `${bb} id -u -- "$1" && ${bb} id -g -- "$1" && ${bb} awk -F: -v u="$1" '$1 == u { print $6 }' /etc/passwd`,
} as const

const errnoTexts: [RegExp, string][] = [
  [/No such file or directory/i, 'ENOENT'],
  [/Not a directory/i, 'ENOTDIR'],
  [/Is a directory/i, 'EISDIR'],
  [/Permission denied|Operation not permitted/i, 'EACCES'],
  [/File exists/i, 'EEXIST'],
  [/Directory not empty/i, 'ENOTEMPTY'],
  [/No space left on device/i, 'ENOSPC'],
]

/** A failed operation's message (script stderr or guest agent error) as a coded error. */
export function guestFsError(op: string, path: string, text: string): SandstormError {
  const errno = errnoTexts.find(([re]) => re.test(text))?.[1]
  const last = text.trim().split('\n').pop() ?? 'unknown error'
  if (!errno) return new SandstormError('internal', `${op} ${path} failed: ${last}`)
  return new SandstormError(codeOfErrno(errno), `${op} ${path}: ${last}`)
}

const typeBits: Record<number, EntryType> = { 0o040000: 'dir', 0o100000: 'file', 0o120000: 'symlink' }

/** Parses one `stat -c '%f %s %Y %u %g'` line. */
export function parseGuestStat(line: string, path: string): EntryInfo {
  const [modeHex, size, mtime, uid, gid] = line.trim().split(' ')
  const raw = parseInt(modeHex ?? '0', 16)
  return {
    name: path === '/' ? '/' : (path.split('/').pop() ?? path),
    path,
    type: typeBits[raw & 0o170000] ?? 'other',
    size: Number(size),
    mode: raw & 0o7777,
    uid: Number(uid),
    gid: Number(gid),
    modifiedAt: new Date(Number(mtime) * 1000).toISOString(),
  }
}

/** Parses the list script: a stat line then the name ending in \0, per entry. */
export function parseGuestListing(output: string, dir: string): EntryInfo[] {
  const entries: EntryInfo[] = []
  const base = dir.replace(/\/+$/, '')
  for (let at = 0; at < output.length; ) {
    const nl = output.indexOf('\n', at)
    const nul = output.indexOf('\0', nl + 1)
    if (nl < 0 || nul < 0) break
    const name = output.slice(nl + 1, nul)
    entries.push(parseGuestStat(output.slice(at, nl), `${base}/${name}`))
    at = nul + 1
  }
  return entries.sort((a, b) => a.name.localeCompare(b.name))
}
