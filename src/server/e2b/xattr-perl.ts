/**
 * Extended attributes from inside a sandbox. Debian's images carry no `getfattr` and python
 * starts slowly, but perl-base is Essential (in every Debian, minbase included) and its builtin
 * `syscall` reaches the xattr calls with no module. Their numbers differ by architecture, so the
 * prelude picks them from perl's own archname.
 */

/**
 * Perl that defines `xlist($path)` (the names, following symlinks), `xget($path, $name)` (a value,
 * or undef), `xset($path, $name, $value)` and `xremove($path, $name)` (true, or false with `$!`).
 */
export const xattrPrelude = String.raw`
use Config;
my %nr = $Config{archname} =~ /^aarch64/
  ? (set => 5, get => 8, list => 11, remove => 14)
  : (set => 188, get => 191, list => 194, remove => 197);
sub xlist { my ($p) = @_; my $b = "\0" x 65536; my $n = syscall($nr{list}, $p, $b, 65536); return () if $n <= 0; return split /\0/, substr($b, 0, $n) }
sub xget { my ($p, $k) = @_; my $b = "\0" x 65536; my $n = syscall($nr{get}, $p, $k, $b, 65536); return $n < 0 ? undef : substr($b, 0, $n) }
sub xset { my ($p, $k, $v) = @_; return syscall($nr{set}, $p, $k, $v, length($v), 0) == 0 }
sub xremove { my ($p, $k) = @_; return syscall($nr{remove}, $p, $k) == 0 }
`

/** The namespace of E2B's file metadata: `user.` lets the file's owner set it, `e2b.` keeps other tools' keys apart (as envd). */
export const metadataXattrPrefix = 'user.e2b.'

/**
 * Perl `meta($path)`: the file's metadata as one field, `hex(key):hex(value)` pairs joined by `,`
 * (hex, since a value set inside the sandbox may hold any byte). At most 64 KiB is read per file:
 * a sandbox could set more, and a listing must stay small.
 */
export const metaPerl = String.raw`
sub meta {
  my ($p) = @_; my @out; my $total = 0;
  for my $name (xlist($p)) {
    next unless $name =~ /^user\.e2b\.(.+)$/s;
    my $key = $1; my $value = xget($p, $name);
    next unless defined $value;
    $total += length($key) + length($value);
    last if $total > 65536;
    push @out, unpack('H*', $key) . ':' . unpack('H*', $value);
  }
  return join(',', @out);
}
`

/** Decodes `meta`'s field; keys or values that are not UTF-8 are skipped (a proto map holds strings), as envd skips them. */
export function parseMetaField(field: string): Record<string, string> | undefined {
  if (!field) return undefined
  const utf8 = new TextDecoder('utf-8', { fatal: true })
  const out: Record<string, string> = {}
  let any = false
  for (const pair of field.split(',')) {
    const [k, v] = pair.split(':')
    if (k === undefined || v === undefined) continue
    try {
      out[utf8.decode(Buffer.from(k, 'hex'))] = utf8.decode(Buffer.from(v, 'hex'))
      any = true
    } catch {
      // Not UTF-8: left out.
    }
  }
  return any ? out : undefined
}
