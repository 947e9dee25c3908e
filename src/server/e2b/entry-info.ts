/**
 * File-system entries as envd's `EntryInfo`, listed inside the sandbox by GNU find (the stat
 * fields, sub-second mtimes included) under a perl wrapper that adds what find cannot print: a
 * symlink's resolved target and that target's mode, and the file's metadata (xattrs).
 */
import { timestampFromMs } from '@bufbuild/protobuf/wkt'
import type { MessageInitShape } from '@bufbuild/protobuf'
import { FileType } from './gen/filesystem/filesystem_pb.js'
import type { EntryInfoSchema } from './gen/filesystem/filesystem_pb.js'
import { metaPerl, parseMetaField, xattrPrelude } from './xattr-perl.js'

/** An EntryInfo as the handlers return it. */
export type EntryInit = MessageInitShape<typeof EntryInfoSchema>

/**
 * GNU find's format for one entry: its type, its type through symlinks, permission bits (octal),
 * size, mtime, owner and group names, then the path; fields end in NUL since names may hold anything.
 */
const findFormat = '%y\\0%Y\\0%m\\0%s\\0%T@\\0%u\\0%g\\0%p\\0'

/**
 * The record of one entry, as the lister and the watcher both print it: find's eight fields, then
 * the symlink's resolved absolute target, that target's permission bits (octal), and the metadata.
 */
export const entryFields = 11

/**
 * Perl run as `perl -e <lister> <path> <minDepth> <maxDepth>`. A symlink's target is resolved in
 * full (envd's EvalSymlinks); one that does not resolve points at itself, as envd reports it.
 */
const lister = String.raw`
use strict; use Cwd 'abs_path';
${xattrPrelude}
${metaPerl}
my ($path, $min, $max) = @ARGV;
if ($min > 0 && !-d $path) { print STDERR (-e $path ? "$path: Not a directory\n" : "$path: No such file or directory\n"); exit 1 }
open(my $find, '-|', 'find', $path, '-mindepth', $min, '-maxdepth', $max, '-printf', '${findFormat}') or die "find: $!\n";
binmode STDOUT; $/ = "\0"; my @f;
while (defined(my $field = <$find>)) {
  chomp $field; push @f, $field; next if @f < 8;
  my ($target, $mode) = ('', '');
  if ($f[0] eq 'l') { $target = -e $f[7] ? abs_path($f[7]) // $f[7] : $f[7]; my @st = stat $f[7]; $mode = @st ? sprintf('%o', $st[2] & 07777) : '' }
  print join("\0", @f, $target, $mode, meta($f[7])), "\0";
  @f = ();
}
close $find; exit($? >> 8) if $?;
`

/**
 * argv that lists a path: `stat` is depth 0, a listing is depths 1..n. A missing path and a listing
 * of a non-directory fail with the words the error mapping knows.
 */
export function listArgv(path: string, minDepth: number, maxDepth: number): string[] {
  return ['/usr/bin/perl', '-e', lister, path, String(minDepth), String(maxDepth)]
}

const typeOf: Record<string, FileType> = { f: FileType.FILE, d: FileType.DIRECTORY }

/** Parses the lister's NUL-separated output into entries. */
export function parseEntries(output: Buffer): EntryInit[] {
  const fields = output.toString('utf8').split('\0')
  const entries: EntryInit[] = []
  for (let i = 0; i + entryFields <= fields.length; i += entryFields) entries.push(entryOf(fields.slice(i, i + entryFields)))
  return entries
}

/**
 * One entry from its record. As envd: a symlink has its target's type and permission bits (no
 * type, so the SDK leaves it out of listings, when the target is gone), its own `L` permission
 * string, and its resolved target; other modes keep their permission bits only.
 */
export function entryOf(record: string[]): EntryInit {
  const [type, typeThrough, mode, size, mtime, owner, group, path, target, targetMode, meta] = record as [string, ...string[]]
  const link = type === 'l'
  const bits = parseInt(mode!, 8)
  const entry: EntryInit = {
    name: path === '/' ? '/' : path!.replace(/\/+$/, '').split('/').pop()!,
    type: (link ? typeOf[typeThrough!] : typeOf[type]) ?? FileType.UNSPECIFIED,
    path: path!,
    size: BigInt(size!),
    mode: (link ? (targetMode ? parseInt(targetMode, 8) : 0) : bits) & 0o777,
    permissions: goPermissions(type, bits),
    owner: owner!,
    group: group!,
    modifiedTime: timestampFromMs(Math.round(Number(mtime) * 1000)),
  }
  if (link) entry.symlinkTarget = target!
  const metadata = parseMetaField(meta ?? '')
  if (metadata) entry.metadata = metadata
  return entry
}

/**
 * The permission string as envd sends it (Go's FileMode.String): mode letters (`d` directory,
 * `L` symlink, `D` device, `p` pipe, `S` socket, `u` setuid, `g` setgid, `c` char device,
 * `t` sticky) or `-` when none, then rwx three times.
 */
export function goPermissions(findType: string, bits: number): string {
  let letters = ''
  if (findType === 'd') letters += 'd'
  if (findType === 'l') letters += 'L'
  if (findType === 'b' || findType === 'c') letters += 'D'
  if (findType === 'p') letters += 'p'
  if (findType === 's') letters += 'S'
  if (bits & 0o4000) letters += 'u'
  if (bits & 0o2000) letters += 'g'
  if (findType === 'c') letters += 'c'
  if (bits & 0o1000) letters += 't'
  const rwx = (shift: number): string =>
    ((bits >> shift) & 4 ? 'r' : '-') + ((bits >> shift) & 2 ? 'w' : '-') + ((bits >> shift) & 1 ? 'x' : '-')
  return (letters || '-') + rwx(6) + rwx(3) + rwx(0)
}
