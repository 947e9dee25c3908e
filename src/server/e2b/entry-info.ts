/** File-system entries as envd's `EntryInfo`, listed with one `find` inside the sandbox. */
import { timestampFromMs } from '@bufbuild/protobuf/wkt'
import type { MessageInitShape } from '@bufbuild/protobuf'
import { FileType } from './gen/filesystem/filesystem_pb.js'
import type { EntryInfoSchema } from './gen/filesystem/filesystem_pb.js'

/** An EntryInfo as the handlers return it. */
export type EntryInit = MessageInitShape<typeof EntryInfoSchema>

/**
 * GNU find's format for one entry: type, permission bits (octal), size, mtime, owner and group
 * names, symlink target, then the path; fields end in NUL since names may hold anything.
 */
export const findFormat = '%y\\0%m\\0%s\\0%T@\\0%u\\0%g\\0%l\\0%p\\0'

const fieldsPerEntry = 8

/**
 * `find` over a path: `stat` is depth 0, a listing is depths 1..n. A missing path and a listing of
 * a non-directory fail with the words the error mapping knows.
 */
export function findArgv(path: string, minDepth: number, maxDepth: number): string[] {
  const script = [
    minDepth > 0 ? '[ -d "$1" ] || { if [ -e "$1" ]; then echo "$1: Not a directory" >&2; else echo "$1: No such file or directory" >&2; fi; exit 1; }' : '',
    `exec find "$1" -mindepth "$2" -maxdepth "$3" -printf '${findFormat}'`,
  ].join('\n')
  return ['/bin/sh', '-c', script, 'e2b-find', path, String(minDepth), String(maxDepth)]
}

const typeOf: Record<string, FileType> = { f: FileType.FILE, d: FileType.DIRECTORY, l: FileType.SYMLINK }
const typeLetter: Record<string, string> = { f: '-', d: 'd', l: 'l', p: 'p', s: 's', c: 'c', b: 'b' }

/** Parses find's NUL-separated output into entries. */
export function parseFind(output: Buffer): EntryInit[] {
  const fields = output.toString('utf8').split('\0')
  const entries: EntryInit[] = []
  for (let i = 0; i + fieldsPerEntry <= fields.length; i += fieldsPerEntry) {
    const [type, mode, size, mtime, owner, group, target, path] = fields.slice(i, i + fieldsPerEntry) as string[]
    const bits = parseInt(mode!, 8)
    const entry: EntryInit = {
      name: path === '/' ? '/' : path!.replace(/\/+$/, '').split('/').pop()!,
      type: typeOf[type!] ?? FileType.UNSPECIFIED,
      path: path!,
      size: BigInt(size!),
      mode: bits,
      permissions: permissionString(typeLetter[type!] ?? '?', bits),
      owner: owner!,
      group: group!,
      modifiedTime: timestampFromMs(Math.round(Number(mtime) * 1000)),
    }
    if (type === 'l') entry.symlinkTarget = target!
    entries.push(entry)
  }
  return entries
}

/** `-rwxr-xr-x` from a type letter and permission bits, as `ls -l` shows them. */
export function permissionString(type: string, bits: number): string {
  const rwx = (shift: number): string =>
    ((bits >> shift) & 4 ? 'r' : '-') + ((bits >> shift) & 2 ? 'w' : '-') + ((bits >> shift) & 1 ? 'x' : '-')
  return type + rwx(6) + rwx(3) + rwx(0)
}
