/**
 * One pass over an image archive (a tar, maybe gzipped): each regular file copied into a temp dir
 * under a name of ours, hashed on the way; links kept as records. Nothing the archive names
 * becomes a path on the host, so no entry can land or point outside that dir.
 */
import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { open } from 'node:fs/promises'
import { posix, join } from 'node:path'
import { PassThrough, Transform, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGunzip } from 'node:zlib'
import { extract } from 'tar-stream'
import { SandstormError, throwIfAborted } from '../../shared/index.js'
import type { Digest } from '../contracts.js'

/** A regular file of the archive, copied out. */
export interface ArchiveFile {
  /** Where its bytes are now (a name of ours in the temp dir). */
  path: string
  sizeBytes: number
  digest: Digest
}

/** The archive's files by normalized name, and its links (name to normalized target). */
export interface ArchiveEntries {
  files: Map<string, ArchiveFile>
  links: Map<string, string>
}

const maxLinkHops = 8
/** The longest entry name or link target kept (PATH_MAX): tar's long-name headers allow megabytes, all held in memory. */
const maxNameBytes = 4096

/** The most an archive's files unpack to unless told otherwise. */
export const defaultMaxArchiveBytes = 32 * 1024 ** 3

/** How much of an archive is read. */
export interface ArchiveLimits {
  /** Bytes of its files, as copied out (a gzipped archive may say little of what it unpacks to). @default 32 GiB */
  maxBytes?: number
  /** Entries, of every kind. @default 100,000 */
  maxEntries?: number
}

/** `a/./b/` → `a/b`; undefined for names that climb out (`../x`) or are empty. */
export function normalizeEntryName(name: string): string | undefined {
  const normal = posix.normalize(name.replace(/^\/+/, '')).replace(/\/+$/, '')
  return normal === '' || normal === '.' || normal === '..' || normal.startsWith('../') ? undefined : normal
}

/** Copies the regular files of the archive at `archivePath` into `dir`; `invalid_argument` when it is no tar or is cut short. */
export async function readArchiveEntries(archivePath: string, dir: string, signal: AbortSignal | undefined, limits: ArchiveLimits = {}): Promise<ArchiveEntries> {
  const files = new Map<string, ArchiveFile>()
  const links = new Map<string, string>()
  const gzipped = await startsWith(archivePath, [0x1f, 0x8b])
  const maxBytes = limits.maxBytes ?? defaultMaxArchiveBytes
  const maxEntries = limits.maxEntries ?? 100_000
  const tar = extract()
  let counter = 0
  let entries = 0
  let totalBytes = 0
  tar.on('entry', (header, stream, next) => {
    const done = (err?: unknown): void => (err ? next(err as Error) : next())
    if (++entries > maxEntries) return done(new SandstormError('resource_exhausted', `image archive ${archivePath}: expected at most ${maxEntries} entries, got more`))
    if (Buffer.byteLength(header.name) > maxNameBytes || Buffer.byteLength(header.linkname ?? '') > maxNameBytes) {
      return done(new SandstormError('invalid_argument', `image archive ${archivePath}: expected entry names and link targets of at most ${maxNameBytes} bytes, got one of ${Math.max(Buffer.byteLength(header.name), Buffer.byteLength(header.linkname ?? ''))}`))
    }
    const name = normalizeEntryName(header.name)
    if (name === undefined) {
      stream.on('end', done).resume()
      return
    }
    if (header.type === 'symlink' || header.type === 'link') {
      const target = header.linkname ?? ''
      // A symlink's target is relative to its directory, a hard link's to the archive's root.
      const resolved = normalizeEntryName(header.type === 'symlink' ? (target.startsWith('/') ? target : posix.join(posix.dirname(name), target)) : target)
      if (resolved !== undefined) links.set(name, resolved)
      stream.on('end', done).resume()
      return
    }
    if (header.type !== 'file' && header.type !== 'contiguous-file') {
      stream.on('end', done).resume()
      return
    }
    const path = join(dir, `entry-${counter++}`)
    const hash = createHash('sha256')
    let sizeBytes = 0
    const hasher = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk)
        sizeBytes += chunk.length
        totalBytes += chunk.length
        if (totalBytes > maxBytes) return callback(new SandstormError('resource_exhausted', `image archive ${archivePath}: it unpacks to more than ${maxBytes} bytes (the limit)`))
        callback(null, chunk)
      },
    })
    pipeline(stream, hasher, createWriteStream(path, { flags: 'wx', mode: 0o600 })).then(() => {
      files.set(name, { path, sizeBytes, digest: `sha256:${hash.digest('hex')}` })
      done()
    }, done)
  })
  const source: Readable = createReadStream(archivePath)
  try {
    await pipeline(source, gzipped ? createGunzip() : new PassThrough(), tar, { signal })
  } catch (err) {
    throwIfAborted(signal)
    if (err instanceof SandstormError) throw err
    const code = (err as { code?: string }).code
    if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR') throw new SandstormError(code === 'ENOENT' ? 'not_found' : 'invalid_argument', `image archive ${archivePath}: expected a readable file, got ${code}`, { cause: err })
    if (code === 'ENOSPC' || code === 'EDQUOT') throw SandstormError.from(err)
    throw new SandstormError('invalid_argument', `image archive ${archivePath}: expected a tar archive, got one that is malformed or cut short (${(err as Error).message})`, { cause: err })
  }
  return { files, links }
}

/** The file `name` of the archive, following its links; undefined when there is none. */
export function fileOf(entries: ArchiveEntries, name: string): ArchiveFile | undefined {
  let current = normalizeEntryName(name)
  for (let hop = 0; current !== undefined && hop <= maxLinkHops; hop++) {
    const file = entries.files.get(current)
    if (file) return file
    current = entries.links.get(current)
  }
  return undefined
}

async function startsWith(path: string, magic: number[]): Promise<boolean> {
  let handle
  try {
    handle = await open(path, 'r')
  } catch (err) {
    const code = (err as { code?: string }).code
    throw new SandstormError(code === 'ENOENT' ? 'not_found' : 'invalid_argument', `image archive ${path}: expected a readable file, got ${code ?? String(err)}`, { cause: err })
  }
  try {
    const buffer = Buffer.alloc(magic.length)
    const { bytesRead } = await handle.read(buffer, 0, magic.length, 0)
    return bytesRead === magic.length && magic.every((byte, i) => buffer[i] === byte)
  } finally {
    await handle.close()
  }
}

/** Whether the file at `path` starts with `magic` (a compressed layer's signature). */
export const fileStartsWith = startsWith
