import type { Readable } from 'node:stream'
import { codeOfErrno, maxHelperStderrBytes, maxHelperStdoutBytes, SandstormError, type EntryInfo, type EntryType } from '../shared/index.js'

/**
 * File operations as shell scripts of a busybox inside the sandbox (runc) or guest (qemu), so
 * that a symlink the sandbox planted resolves inside its own root, never on the host. Arguments
 * are passed as "$1", "$2", never spliced into the script.
 */
export function busyboxFsScripts(bb: string) {
  return {
    read: `[ -d "$1" ] && { echo "cat: $1: Is a directory" >&2; exit 1; }; exec ${bb} cat -- "$1"`,
    /** Writes stdin to "$2" beside "$1", then renames it over "$1" (which keeps its owner and mode). */
    write: [
      `[ -d "$1" ] && { echo "write: $1: Is a directory" >&2; exit 1; }`,
      `${bb} mkdir -p -- "$(${bb} dirname -- "$1")" || exit 1`,
      `${bb} cat > "$2" || exit 1`,
      `if [ -e "$1" ]; then ${bb} chown "$(${bb} stat -L -c %u:%g -- "$1")" "$2" && ${bb} chmod "$(${bb} stat -L -c %a -- "$1")" "$2" || exit 1; fi`,
      `exec ${bb} mv -f -T -- "$2" "$1"`,
    ].join('\n'),
    removeTemp: `exec ${bb} rm -f -- "$1"`,
    stat: `exec ${bb} stat -c '%f %s %Y %u %g' -- "$1"`,
    list: [
      `if [ ! -d "$1" ]; then`,
      `  if [ -e "$1" ]; then echo "ls: $1: Not a directory" >&2; else echo "ls: $1: No such file or directory" >&2; fi; exit 1`,
      `fi`,
      `cd -- "$1" || exit 1`,
      `for f in .* *; do`,
      `  case "$f" in .|..) continue;; esac`,
      `  [ -e "$f" ] || [ -L "$f" ] || continue`,
      `  ${bb} stat -c '%f %s %Y %u %g' -- "$f" || continue`,
      `  printf '%s\\0' "$f"`,
      `done`,
    ].join('\n'),
    mkdir: `exec ${bb} mkdir -- "$1"`,
    mkdirParents: `[ -e "$1" ] && [ ! -d "$1" ] && { echo "mkdir: $1: File exists" >&2; exit 1; }; exec ${bb} mkdir -p -- "$1"`,
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
}

/** argv that runs one of the scripts with its arguments. */
export function scriptArgv(bb: string, script: string, args: string[]): string[] {
  return [bb, 'sh', '-c', script, 'sandstorm-fs', ...args]
}

const errnoTexts: [RegExp, string][] = [
  [/No such file or directory/i, 'ENOENT'],
  [/Not a directory/i, 'ENOTDIR'],
  [/Is a directory/i, 'EISDIR'],
  [/Permission denied|Operation not permitted/i, 'EACCES'],
  [/File exists/i, 'EEXIST'],
  [/Directory not empty/i, 'ENOTEMPTY'],
  [/Read-only file system/i, 'EROFS'],
  [/No space left on device/i, 'ENOSPC'],
  [/Disk quota exceeded/i, 'EDQUOT'],
  [/File too large/i, 'EFBIG'],
  [/File name too long/i, 'ENAMETOOLONG'],
  [/Too many levels of symbolic links/i, 'ELOOP'],
]

const errnoWords: Record<string, string> = {
  ENOENT: 'no such file or directory',
  ENOTDIR: 'a part of the path is not a directory',
  EISDIR: 'is a directory (expected a file)',
  EACCES: 'permission denied',
  EEXIST: 'already exists',
  ENOTEMPTY: 'directory is not empty (pass recursive to remove it)',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left in the sandbox',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large',
  ENAMETOOLONG: 'file name too long',
  ELOOP: 'too many levels of symbolic links',
}

/** Turns a failed script's stderr into a SandstormError with a code. */
export function fsError(op: string, path: string, stderr: string): SandstormError {
  const errno = errnoTexts.find(([re]) => re.test(stderr))?.[1]
  if (!errno) return new SandstormError('internal', `${op} ${path} failed: ${stderr.trim().split('\n').pop() ?? 'unknown error'}`)
  const code = errno === 'ELOOP' ? 'invalid_argument' : codeOfErrno(errno)
  return new SandstormError(code, `${op} ${path}: ${errnoWords[errno]}`)
}

const typeBits: Record<number, EntryType> = { 0o040000: 'dir', 0o100000: 'file', 0o120000: 'symlink' }

/** Parses `stat -c '%f %s %Y %u %g'` into an entry. */
export function parseStat(line: string, path: string): EntryInfo {
  const [modeHex, size, mtime, uid, gid] = line.trim().split(' ')
  const raw = parseInt(modeHex ?? '0', 16)
  const name = path === '/' ? '/' : (path.split('/').pop() ?? path)
  return {
    name,
    path,
    type: typeBits[raw & 0o170000] ?? 'other',
    size: Number(size),
    mode: raw & 0o7777,
    uid: Number(uid),
    gid: Number(gid),
    modifiedAt: isoTime(Number(mtime)),
  }
}

/** Parses the list script's output: a stat line ending in \n, then the name ending in \0, per entry. */
export function parseListing(output: string, dir: string): EntryInfo[] {
  const entries: EntryInfo[] = []
  let at = 0
  while (at < output.length) {
    const nl = output.indexOf('\n', at)
    const nul = output.indexOf('\0', nl + 1)
    if (nl < 0 || nul < 0) break
    const name = output.slice(nl + 1, nul)
    entries.push(parseStat(output.slice(at, nl), dir === '/' ? `/${name}` : `${dir.replace(/\/+$/, '')}/${name}`))
    at = nul + 1
  }
  return entries.sort((a, b) => a.name.localeCompare(b.name))
}

/** The farthest time a Date holds (±8.64e15 ms): a file may carry any mtime, and a tmpfs takes far-future ones. */
const maxDateMs = 8.64e15

/** A file time in seconds as an ISO string, clamped to what a Date holds. */
function isoTime(seconds: number): string {
  const ms = Number.isFinite(seconds) ? Math.max(-maxDateMs, Math.min(maxDateMs, seconds * 1000)) : 0
  return new Date(ms).toISOString()
}

/**
 * Reads a helper's stdout as text. The helper runs in the sandbox, where root can write to its
 * stdout too (through /proc/PID/fd/1): past `maxBytes` the read stops, `stop` is called (it kills
 * the helper) and the read fails naming the bound.
 */
export async function readAll(stream: Readable, what: string, stop: () => unknown, maxBytes = maxHelperStdoutBytes): Promise<string> {
  const chunks: Buffer[] = []
  let bytes = 0
  for await (const chunk of stream) {
    bytes += (chunk as Buffer).length
    if (bytes > maxBytes) {
      stream.destroy()
      await stop()
      throw new SandstormError('resource_exhausted', `${what}: the helper in the sandbox printed more than ${maxBytes} bytes`)
    }
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** Reads a helper's stderr to its end, keeping the first `maxBytes` as text. */
export async function readHead(stream: Readable, maxBytes = maxHelperStderrBytes): Promise<string> {
  const chunks: Buffer[] = []
  let bytes = 0
  for await (const chunk of stream) {
    if (bytes < maxBytes) chunks.push((chunk as Buffer).subarray(0, maxBytes - bytes))
    bytes += (chunk as Buffer).length
  }
  return Buffer.concat(chunks).toString('utf8')
}
