/**
 * E2B's file metadata: `X-Metadata-<key>: <value>` headers on an upload (what SDK 2.51 sends for
 * `files.write(..., { metadata })`, from envd 0.6.2 on), kept as `user.e2b.<key>` xattrs on the
 * file inside the sandbox, set by the writing user. Kept in the sandbox, the metadata goes where
 * the file goes (snapshots, forks, renames) and out of the catalog. Bounds are envd's: printable
 * ASCII, keys lowercased and at most 246 bytes, 4 KiB in all (one ext4 block holds an inode's xattrs).
 */
import { SandstormError } from '../../shared/index.js'
import { metadataXattrPrefix, metaPerl, xattrPrelude } from './xattr-perl.js'

const headerPrefix = 'x-metadata-'

/** The longest key: Linux caps an xattr name at 255 bytes, prefix included. */
export const maxMetadataKeyBytes = 255 - metadataXattrPrefix.length

/** All keys (with the prefix) and values of one file together. */
export const maxMetadataBytes = 4096

const printable = /^[\x20-\x7e]*$/

/** The metadata of an upload's headers, checked; a 400 naming the key when it is out of bounds. */
export function metadataOf(headers: Headers): Record<string, string> {
  const metadata: Record<string, string> = {}
  let total = 0
  for (const [name, value] of headers) {
    if (!name.startsWith(headerPrefix)) continue
    const key = name.slice(headerPrefix.length).toLowerCase()
    if (!key) continue
    // A repeated header arrives joined by ", " (envd would keep the first one): the SDK sends each key once.
    if (!printable.test(key)) throw new SandstormError('invalid_argument', `metadata key ${JSON.stringify(key)}: expected printable US-ASCII`)
    if (key.length > maxMetadataKeyBytes) throw new SandstormError('invalid_argument', `metadata key ${JSON.stringify(key.slice(0, 40))}...: expected at most ${maxMetadataKeyBytes} bytes, got ${key.length}`)
    if (!printable.test(value)) throw new SandstormError('invalid_argument', `metadata value for key ${JSON.stringify(key)}: expected printable US-ASCII`)
    metadata[key] = value
    total += metadataXattrPrefix.length + key.length + value.length
  }
  if (total > maxMetadataBytes) throw new SandstormError('invalid_argument', `metadata: expected at most ${maxMetadataBytes} bytes in all (keys with their "${metadataXattrPrefix}" prefix, and values), got ${total}`)
  return metadata
}

/**
 * Perl run as `perl -e <setter> <path> [key value]...`: replaces the file's metadata with the pairs
 * given (an upload without metadata clears what an earlier one left, as envd does), then prints
 * it as read back. A file system without user xattrs (tmpfs on older kernels) keeps none, as envd.
 */
const setter = String.raw`
use strict;
${xattrPrelude}
${metaPerl}
my ($path, %want) = @ARGV;
for my $name (xlist($path)) {
  next unless $name =~ /^user\.e2b\.(.+)$/s;
  next if exists $want{$1};
  xremove($path, $name) or die "$path: $!\n";
}
for my $key (sort keys %want) {
  next if xset($path, "user.e2b.$key", $want{$key});
  last if $!{EOPNOTSUPP} || $!{ENOTSUP};
  die "$path: $!\n";
}
binmode STDOUT; print meta($path);
`

/**
 * Shell that writes stdin to `$1` as the caller, making missing parents (theirs, since they make
 * them), then sets the metadata. An image without perl still takes writes that carry no metadata.
 */
const writeScript = [
  'p=$1; s=$2; shift 2',
  'mkdir -p -- "$(dirname -- "$p")" && cat > "$p" || exit',
  '[ -x /usr/bin/perl ] || { [ $# -eq 0 ] && exit 0; echo "$p: file metadata needs perl in the sandbox: Operation not supported" >&2; exit 1; }',
  'exec /usr/bin/perl -e "$s" -- "$p" "$@"',
].join('\n')

/** argv that writes a file from stdin and replaces its metadata; it prints the metadata as read back. */
export function writeArgv(path: string, metadata: Record<string, string>): string[] {
  return ['/bin/sh', '-c', writeScript, 'e2b-write', path, setter, ...Object.entries(metadata).flat()]
}
