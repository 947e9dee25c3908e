/** A tar entry's header, normalised: its path inside the layer, owner, mode, time and kept xattrs. */
import { posix } from 'node:path'
import type { Header } from 'tar-stream'
import { SandstormError } from '../../shared/index.js'

/** A tar header as tar-stream gives it, with the PAX records it read (typed loosely upstream). */
export type TarHeader = Omit<Header, 'pax' | 'type'> & { type: Header['type'] | null; pax?: Record<string, string> | null }

/** What an unpack needs to know of one entry. */
export interface TarEntryInfo {
  /** The path relative to the layer root, normalised ("" for the root itself). */
  path: string
  type: Header['type'] | 'unknown'
  mode: number
  uid: number
  gid: number
  mtime: Date
  /** Declared size of the content (what the limits count). */
  sizeBytes: number
  /** A symlink's target, as written; a hardlink's target, normalised like `path`. */
  linkname: string
  /** Extended attributes kept (see keptXattr), values as bytes. */
  xattrs: Map<string, Buffer>
}

/**
 * A path of an entry as Docker reads it: leading `/` and `./` stripped, `.` and `..` resolved
 * lexically; "" is the root. A path that would leave the layer is refused.
 */
export function normaliseEntryPath(name: string, what: string): string {
  if (name.includes('\0')) throw new SandstormError('invalid_argument', `tar entry ${JSON.stringify(name)} (${what}) holds a NUL byte`)
  const normal = posix.normalize(`/${name}`)
  // normalize of an absolute path clamps `..` at the root, so compare with a relative normalisation
  // to see whether the name tried to climb out.
  const relative = posix.normalize(name.replace(/^(\.?\/)+/, ''))
  if (relative === '..' || relative.startsWith('../')) {
    throw new SandstormError('invalid_argument', `tar entry ${JSON.stringify(name)} (${what}) leaves the layer's directory; expected a path inside it`)
  }
  return normal.replace(/^\/+/, '').replace(/\/+$/, '')
}

/**
 * Whether an xattr from a layer is kept: `security.capability` (file capabilities, which images
 * such as ping rely on) and `user.*`. `trusted.*` is dropped above all: a layer carrying
 * `trusted.overlay.*` could forge overlay whiteouts, opaque dirs or redirects; the other
 * `security.*` (SELinux labels, IMA) and `system.*` (ACLs) mean nothing for the sandbox or could
 * grant what the host did not mean to.
 */
export function keptXattr(name: string): boolean {
  return name === 'security.capability' || (name.startsWith('user.') && name.length > 'user.'.length)
}

/** The entry's header read into a TarEntryInfo; `onDropped` hears of xattrs that were not kept. */
export function entryInfo(header: TarHeader, onDropped: (name: string, why: string) => void): TarEntryInfo {
  const pax = header.pax ?? {}
  const info: TarEntryInfo = {
    path: normaliseEntryPath(header.name, 'path'),
    type: header.type ?? 'unknown',
    mode: (header.mode ?? 0o644) & 0o7777,
    uid: paxNumber(pax.uid) ?? header.uid ?? 0,
    gid: paxNumber(pax.gid) ?? header.gid ?? 0,
    mtime: paxTime(pax.mtime) ?? header.mtime ?? new Date(0),
    sizeBytes: header.size ?? 0,
    linkname: header.linkname ?? '',
    xattrs: new Map(),
  }
  if (info.type === 'link') info.linkname = normaliseEntryPath(info.linkname, `hardlink target of ${header.name}`)
  for (const [key, value] of Object.entries(pax)) {
    if (key.startsWith('SCHILY.xattr.')) {
      const name = key.slice('SCHILY.xattr.'.length)
      if (!keptXattr(name)) onDropped(name, 'not kept from layers')
      // tar-stream decodes PAX values as UTF-8: bytes that are not UTF-8 (a capability set with a
      // high bit) came back as U+FFFD and cannot be recovered, so such a value is dropped, not forged.
      else if (value.includes('\uFFFD')) onDropped(name, 'its value is not UTF-8 once read, and could not be kept exactly')
      else info.xattrs.set(name, Buffer.from(value, 'utf8'))
    } else if (key.startsWith('LIBARCHIVE.xattr.')) {
      // libarchive (bsdtar) writes the name URL-encoded and the value in base64: exact bytes.
      let name: string
      try {
        name = decodeURIComponent(key.slice('LIBARCHIVE.xattr.'.length))
      } catch {
        onDropped(key, 'its name is not URL-encoded')
        continue
      }
      if (keptXattr(name)) info.xattrs.set(name, Buffer.from(value, 'base64'))
      else onDropped(name, 'not kept from layers')
    }
  }
  return info
}

function paxNumber(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,10}$/.test(value)) return undefined
  const n = Number(value)
  return n <= 0xffffffff ? n : undefined
}

function paxTime(value: string | undefined): Date | undefined {
  if (value === undefined || !/^-?\d{1,12}(\.\d+)?$/.test(value)) return undefined
  return new Date(Number(value) * 1000)
}
