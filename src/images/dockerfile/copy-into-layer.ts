/**
 * Writes a COPY or ADD into a fresh layer directory as Docker would write it into the image's
 * root: the destination resolved through the chain's symlinks (inside the root: a COPY to /bin/
 * on a merged-/usr image lands in /usr/bin), parent directories the chain lacks created, those it
 * has recreated with its modes and owners (an overlay upper directory's metadata is what the
 * merged root shows), modes kept, owner root unless --chown. The layer directory is ours, but what
 * we copied into it came from the context: nothing is written through a symlink in it.
 */
import { once } from 'node:events'
import { constants } from 'node:fs'
import { type FileHandle, chmod, lchown, lstat, lutimes, mkdir, open, readdir, realpath, rename, rm, rmdir, symlink } from 'node:fs/promises'
import { join, posix, relative } from 'node:path'
import type { Readable } from 'node:stream'
import { randomBytes } from 'node:crypto'
import { SandstormError, type CallOptions } from '../../shared/index.js'
import { blockBytes, inBlocks, roomBudget } from '../../storage/layers/host-room.js'
import { decompressed, defaultMaxLayerBytes, sniffCompression, unpackTar } from '../layers/index.js'
import { lookupInChain } from './chain-fs.js'
import type { Owner } from './chain-users.js'
import { openContextFile, type ContextEntry, type ResolvedSources } from './context-sources.js'

/** What to copy and how. */
export interface CopyIntoLayerOptions extends CallOptions {
  /** The fresh layer directory (from the layer store's create). */
  layerDir: string
  /** The chain the layer goes on, topmost first. */
  lowerDirs: readonly string[]
  contextDir: string
  sources: ResolvedSources
  /** Absolute; a trailing `/` says a directory. */
  dest: string
  /** @default root (0:0) */
  owner?: Owner
  /** Replaces every copied file's and directory's permission bits. */
  chmod?: number
  /** ADD: a local tar (plain, gzip or zstd) is unpacked into the destination. @default false */
  extractArchives?: boolean
  /** For messages ("Dockerfile line 5 (COPY)"). */
  where: string
  /**
   * The most the layer may hold: files' bytes as written (a file reached by several hardlinks of
   * the context is copied, and counted, each time), and what ADD unpacks. @default defaultMaxLayerBytes
   */
  maxLayerBytes?: number
  /**
   * The room the layer may take on the host's disk (the layer store's create gives it): files'
   * whole blocks and directories' blocks, what ADD unpacks included. @default unbounded
   */
  roomBytes?: number
  /** The files (inodes) it may make there. @default no bound */
  roomFiles?: number
}

const root: Owner = { uid: 0, gid: 0 }

/** Copies `options.sources` into `options.layerDir` at `options.dest`. */
export async function copyIntoLayer(options: CopyIntoLayerOptions): Promise<void> {
  const { layerDir, contextDir, sources, dest, where, signal } = options
  const owner = options.owner ?? root
  const lowers = [layerDir, ...options.lowerDirs]
  const refuse = (why: string): never => {
    throw new SandstormError('invalid_argument', `${where}: ${why}`)
  }
  const destParts = posix.normalize(dest).replace(/^\/+|\/+$/g, '')
  const dirLike = dest.endsWith('/')
  const items = sources.sources
  if (items.length > 1 && !dirLike) refuse(`copying ${items.length} sources needs a destination directory ending with "/", got ${JSON.stringify(dest)}`)
  const dirTimes: [string, Date][] = []
  const maxBytes = options.maxLayerBytes ?? defaultMaxLayerBytes
  let written = 0
  const room = roomBudget(options.roomBytes ?? Number.POSITIVE_INFINITY, where, options.roomFiles)
  /** Counts `bytes` more into the layer, refusing past its bound. */
  const count = (bytes: number): void => {
    written += bytes
    if (written > maxBytes) throw new SandstormError('resource_exhausted', `${where}: the layer would hold more than ${maxBytes} bytes (the limit, maxLayerBytes)`)
  }

  const ensureDir = (rel: string, created: Owner = root, mode = 0o755): Promise<string> => ensureLayerDir(layerDir, options.lowerDirs, rel, created, mode)
  // The parent directories already made, so a directory of many files resolves its path once;
  // forgotten whenever a symlink is made or something removed, which could change a resolution.
  const parents = new Map<string, string>()
  const parentDir = async (rel: string): Promise<string> => {
    let host = parents.get(rel)
    if (host === undefined) parents.set(rel, (host = await ensureDir(rel)))
    return host
  }

  /** Clears the way for a non-directory at `name` in `hostDir` (something copied before it). */
  const clear = async (hostDir: string, name: string): Promise<string> => {
    const host = join(hostDir, name)
    if (await lstat(host).catch(() => null)) {
      await rm(host, { recursive: true, force: true })
      parents.clear()
    }
    return host
  }

  const writeEntry = async (e: ContextEntry, target: string): Promise<void> => {
    signal?.throwIfAborted()
    const mode = e.type === 'symlink' ? 0 : (options.chmod ?? e.mode)
    if (e.type === 'dir') {
      room.take(blockBytes, 1)
      const host = await ensureDir(target, owner, mode)
      parents.set(target, host)
      await lchown(host, owner.uid, owner.gid)
      await chmod(host, mode)
      dirTimes.push([host, e.mtime])
      return
    }
    const parent = await parentDir(posix.dirname(target) === '.' ? '' : posix.dirname(target))
    const host = await clear(parent, posix.basename(target))
    if (e.type === 'symlink') {
      room.take(0, 1)
      await symlink(e.linkTarget!, host)
      parents.clear()
    } else {
      room.take(inBlocks(e.size), 1)
      count(e.size)
      const input = await openContextFile(contextDir, e.rel)
      try {
        const output = await open(host, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
        try {
          await copyBytes(input, output, signal)
        } finally {
          await output.close()
        }
      } finally {
        await input.close()
      }
    }
    await lchown(host, owner.uid, owner.gid)
    // chmod after chown: a chown clears setuid and setgid bits.
    if (e.type === 'file') await chmod(host, mode)
    await lutimes(host, e.mtime, e.mtime)
  }

  for (const item of items) {
    const [self, ...under] = item.entries
    if (!self) continue
    if (item.type === 'dir') {
      // A directory's contents are copied, not the directory itself (Docker's rule): the
      // destination is made when missing and otherwise left as the chain has it.
      await ensureDir(destParts, owner, options.chmod ?? 0o755)
      for (const e of under) await writeEntry(e, posix.join(destParts, e.sub))
      continue
    }
    if (options.extractArchives && item.type === 'file' && (await isTarArchive(contextDir, item.rel, refuse))) {
      await extractInto(await ensureDir(destParts, owner), item.rel)
      continue
    }
    const intoDir = dirLike || (await lookupInChain(lowers, destParts, { followLast: true })).entry?.stat.isDirectory() === true
    if (destParts === '' && !intoDir) refuse('expected a destination other than the root for a file')
    await writeEntry(self, intoDir ? posix.join(destParts, posix.basename(item.rel)) : destParts)
  }
  // A later source may have replaced a directory on the way to one of these with a symlink (a
  // directory's copy, then a link of the same name): only a path that still resolves to itself,
  // through no link, is this layer's directory. Nothing else runs in the layer meanwhile.
  const realLayer = await realpath(layerDir)
  for (const [host, mtime] of dirTimes.reverse()) {
    const real = await realpath(host).catch(() => null)
    if (real === join(realLayer, relative(layerDir, host))) await lutimes(host, mtime, mtime)
  }

  async function extractInto(hostDest: string, rel: string): Promise<void> {
    // unpackTar wants an empty directory: unpack beside, then merge into the destination.
    const tmp = join(layerDir, `.add-${randomBytes(8).toString('hex')}`)
    await mkdir(tmp, { mode: 0o700 })
    try {
      const file = await openContextFile(contextDir, rel)
      try {
        const input = await decompressed(file.createReadStream({ autoClose: false }) as Readable, 'application/x-tar')
        const unpacked = await unpackTar(input, tmp, { whiteouts: false, label: `the archive ${JSON.stringify(rel)} of ${where}`, maxLayerBytes: maxBytes - written, room, ...(signal && { signal }) })
        count(unpacked.sizeBytes)
      } finally {
        await file.close()
      }
      await mergeInto(tmp, hostDest)
      // The archive may have put a symlink where a directory was.
      parents.clear()
    } finally {
      await rm(tmp, { recursive: true, force: true })
    }
  }
}

/**
 * The host path of directory `rel` (resolved through the symlinks of the layer and the chain
 * below it) in `layerDir`, made where missing: with the chain's mode and owner where the chain has
 * it, else 0755 root, the last part `created` with `mode`.
 */
export async function ensureLayerDir(layerDir: string, lowerDirs: readonly string[], rel: string, created: Owner = root, mode = 0o755): Promise<string> {
  const { rel: resolved } = await lookupInChain([layerDir, ...lowerDirs], rel, { followLast: true })
  let current = ''
  for (const part of resolved === '' ? [] : resolved.split('/')) {
    current = current === '' ? part : `${current}/${part}`
    const host = join(layerDir, current)
    const stat = await lstat(host).catch(() => null)
    if (stat?.isDirectory()) continue
    // Only what this step copied can be here: a non-directory where a directory must go is replaced.
    if (stat) await rm(host, { recursive: true, force: true })
    const below = (await lookupInChain(lowerDirs, current)).entry
    const isLast = current === resolved
    const meta = below?.stat.isDirectory() ? { mode: below.stat.mode & 0o7777, uid: below.stat.uid, gid: below.stat.gid } : { mode: isLast ? mode : 0o755, ...(isLast ? created : root) }
    await mkdir(host)
    await lchown(host, meta.uid, meta.gid)
    await chmod(host, meta.mode)
  }
  return join(layerDir, resolved)
}

/** Moves everything in `from` into `to`, directories merging, anything else replacing what is there. */
async function mergeInto(from: string, to: string): Promise<void> {
  for (const name of await readdir(from)) {
    const src = join(from, name)
    const dst = join(to, name)
    const [s, d] = await Promise.all([lstat(src), lstat(dst).catch(() => null)])
    if (s.isDirectory() && d?.isDirectory()) {
      await mergeInto(src, dst)
      await rmdir(src)
      continue
    }
    if (d) await rm(dst, { recursive: true, force: true })
    await rename(src, dst)
  }
}

/** Is the context file a tar (plain, gzip or zstd), which ADD unpacks? xz and bzip2 are refused. */
async function isTarArchive(contextDir: string, rel: string, refuse: (why: string) => never): Promise<boolean> {
  const file = await openContextFile(contextDir, rel)
  try {
    const head = Buffer.alloc(512)
    const { bytesRead } = await file.read(head, 0, head.length, 0)
    let compression: ReturnType<typeof sniffCompression>
    try {
      compression = sniffCompression(head.subarray(0, bytesRead))
    } catch {
      return refuse(`ADD ${JSON.stringify(rel)}: xz and bzip2 archives are not unpacked here; expected a tar, tar+gzip or tar+zstd (or COPY to copy it as it is)`)
    }
    if (compression === 'none') return isTarHeader(head.subarray(0, bytesRead))
    const stream = await decompressed(file.createReadStream({ autoClose: false, start: 0 }) as Readable, 'application/x-tar')
    const chunks: Buffer[] = []
    let size = 0
    try {
      for await (const chunk of stream) {
        chunks.push(chunk as Buffer)
        size += (chunk as Buffer).length
        if (size >= 512) break
      }
    } catch {
      // Not a whole compressed file: copied as it is, as Docker does with what it cannot unpack.
      return false
    } finally {
      stream.destroy()
      if (!stream.readableEnded) await once(stream, 'close').catch(() => undefined)
    }
    return isTarHeader(Buffer.concat(chunks))
  } finally {
    await file.close()
  }
}

/** A ustar (POSIX or GNU) header's magic at offset 257. */
function isTarHeader(block: Buffer): boolean {
  return block.length >= 262 && block.subarray(257, 262).toString('latin1') === 'ustar'
}

/** Copies every byte of `input` into `output` (both opened by us, so no stream owns the handles). */
async function copyBytes(input: FileHandle, output: FileHandle, signal: AbortSignal | undefined): Promise<void> {
  const buf = Buffer.allocUnsafe(1024 * 1024)
  for (;;) {
    signal?.throwIfAborted()
    const { bytesRead } = await input.read(buf, 0, buf.length, null)
    if (bytesRead === 0) return
    let written = 0
    while (written < bytesRead) written += (await output.write(buf, written, bytesRead - written)).bytesWritten
  }
}
