/**
 * Unpacking an untrusted tar (an image layer, a build context) into an empty directory, by Docker's
 * rules and as overlayfs expects a lower layer to look.
 *
 * Nothing here follows a symlink from the archive: every parent of an entry must be a directory
 * this unpack made (the directory is ours alone while we fill it, so a check once per directory is
 * race-free), an entry that replaces another unlinks it first and is created with O_EXCL|O_NOFOLLOW,
 * and metadata is applied through file handles opened with O_NOFOLLOW.
 */
import { constants } from 'node:fs'
import { chmod, link, lstat, lutimes, lchown, mkdir, open, rm, symlink, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { finished, type Readable } from 'node:stream'
import tar from 'tar-stream'
import { runOrThrow, runProcess, SandstormError, silentLogger, throwIfAborted, type CallOptions, type Logger } from '../../shared/index.js'
import { blockBytes, inBlocks, type RoomBudget } from '../../storage/layers/host-room.js'
import { markOpaque } from '../../storage/layers/overlay-marks.js'
import type { UnpackLimits } from '../contracts.js'
import { defaultMaxHeldPathBytes, HeldPathBudget, type PathSet } from './held-paths.js'
import { entryInfo, type TarEntryInfo, type TarHeader } from './tar-entry.js'

/** Default of UnpackLimits.maxLayerBytes: 16 GiB. */
export const defaultMaxLayerBytes = 16 * 1024 ** 3
/** Default of UnpackLimits.maxEntries. */
export const defaultMaxEntries = 1_000_000
/**
 * Default of UnpackTarOptions.maxForgetVisits: a directory replaced by another entry makes the
 * unpack forget what it held below it, by a scan of all it holds; a tar that replaces directories
 * over and over would make that quadratic (a million entries: 10^11 steps, the agent's event loop
 * held for hours). Ten million steps are a fraction of a second; no image replaces that much.
 */
export const defaultMaxForgetVisits = 10_000_000

/** Options of unpackTar. */
export interface UnpackTarOptions extends UnpackLimits, CallOptions {
  /** Turn `.wh.<name>` into overlay whiteouts and `.wh..wh..opq` into opaque dirs (an image layer); false for a build context, where they are plain files. */
  whiteouts: boolean
  /** What the tar is, for messages ("layer sha256:…", "the build context"). @default 'the layer' */
  label?: string
  logger?: Logger
  /**
   * The room on the host's disk this unpack may take (roomBudget: the free space beyond the host's
   * margin), charged as each entry's header comes: a file's whole blocks, a directory's block.
   * @default unbounded (but for maxLayerBytes)
   */
  room?: RoomBudget
  /** Most bytes of paths (UTF-8) held until the unpack ends: its directories', whiteouts' and opaque marks'. @default 256 MiB */
  maxHeldPathBytes?: number
  /** Most paths looked at, in all, to forget what lay below directories the tar replaces. @default defaultMaxForgetVisits */
  maxForgetVisits?: number
}

/** What an unpack wrote. */
export interface UnpackTarResult {
  /** Bytes of regular files and symlink targets, as declared, each hardlinked file once. */
  sizeBytes: number
  /** Entries read from the tar (every header, whiteouts and skipped ones included). */
  entries: number
}

const whiteoutPrefix = '.wh.'
const opaqueMarker = '.wh..wh..opq'
/** How many whiteouts one `mknod` shell loop makes (an argv well under the kernel's limit). */
const whiteoutBatch = 256
/** The longest symlink target ext4 keeps in the inode, taking no block. */
const inlineSymlinkBytes = 59

interface DirMeta {
  mode: number
  uid: number
  gid: number
  mtime: Date
}

/** A directory's metadata and its depth (counted once, when it comes: the sort at the end compares numbers). */
interface HeldDir extends DirMeta {
  depth: number
}

/**
 * Unpacks the tar `input` (uncompressed: see decompressed()) into `dir`, an existing empty
 * directory. Rejects on a hostile or broken tar, past a limit, on an error of `input` or on cancel;
 * the caller then removes `dir`, which may hold part of the tar.
 */
export async function unpackTar(input: Readable, dir: string, options: UnpackTarOptions): Promise<UnpackTarResult> {
  const signal = options.signal
  if (signal?.aborted) {
    input.destroy()
    throwIfAborted(signal)
  }
  const unpack = new Unpack(dir, options)
  // tar-stream's streams are streamx streams, which node:stream's pipeline does not fully know:
  // piped by hand, with an error or cancel of either side destroying both.
  const extract = tar.extract()
  let inputError: unknown = null
  const onAbort = (): void => {
    input.destroy()
    extract.destroy(new SandstormError('canceled', 'the unpack was canceled'))
  }
  // finished() also reports a stream that errored or ended before it was handed here, and a
  // destroy without an error as a premature close: it settles in every case.
  const inputDone = new Promise<void>((resolve, reject) => {
    finished(input, (error) => {
      if (!error) return resolve()
      inputError ??= error
      extract.destroy(error)
      reject(error)
    })
  })
  inputDone.catch(() => {})
  signal?.addEventListener('abort', onAbort, { once: true })
  input.pipe(extract as unknown as NodeJS.WritableStream)
  try {
    for await (const entry of extract) {
      try {
        await unpack.entry(entry.header as TarHeader, entry as unknown as Readable)
      } finally {
        // An entry skipped or refused part way is drained, so the tar can go on (or fail) by itself.
        entry.resume()
      }
    }
    // Only a clean end of input counts (the source errors at its end when its digest is wrong).
    await inputDone
    throwIfAborted(signal)
    await unpack.finish()
    return unpack.result()
  } catch (error) {
    input.destroy()
    extract.destroy()
    throwIfAborted(signal)
    throw unpackError(inputError ?? error, options.label ?? 'the layer')
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
}

/** One unpack's state: what it made, and what it applies at the end. */
class Unpack {
  private readonly label: string
  private readonly maxBytes: number
  private readonly maxEntries: number
  private readonly logger: Logger
  /** Relative paths known to be real directories made by this unpack ("" is `dir`). */
  private readonly dirs: PathSet
  /** Directories' metadata, applied after their contents (deepest first); its keys are in `dirs`, and counted there. */
  private readonly dirMeta = new Map<string, HeldDir>()
  /** Whiteouts and opaque marks, made at the end (a later entry of the tar may replace them). */
  private readonly whiteouts: PathSet
  private readonly opaque: PathSet
  private sizeBytes = 0
  private entries = 0
  private forgetVisits = 0

  constructor(
    private readonly root: string,
    private readonly options: UnpackTarOptions,
  ) {
    this.label = options.label ?? 'the layer'
    this.maxBytes = options.maxLayerBytes ?? defaultMaxLayerBytes
    this.maxEntries = options.maxEntries ?? defaultMaxEntries
    this.logger = options.logger ?? silentLogger()
    const held = new HeldPathBudget(options.maxHeldPathBytes ?? defaultMaxHeldPathBytes, this.label)
    this.dirs = held.newSet()
    this.dirs.add('')
    this.whiteouts = held.newSet()
    this.opaque = held.newSet()
  }

  result(): UnpackTarResult {
    return { sizeBytes: this.sizeBytes, entries: this.entries }
  }

  async entry(header: TarHeader, content: Readable): Promise<void> {
    this.entries++
    if (this.entries > this.maxEntries) {
      throw new SandstormError('resource_exhausted', `${this.label} holds more than ${this.maxEntries} entries (the limit, maxEntries)`)
    }
    const info = entryInfo(header, (name, why) => this.logger.debug({ entry: header.name, xattr: name, why }, 'xattr dropped'))
    // Before the layer's own limit: when both are passed, the full disk is what stops it.
    // Every entry but a hardlink is an inode of the host's disk, an empty file too.
    this.options.room?.take(diskBytesOf(info), info.type === 'link' ? 0 : 1)
    if (info.type === 'file' || info.type === 'contiguous-file' || info.type === 'symlink') {
      // Counted as declared, before a byte is written, so a layer bomb stops at its header.
      this.sizeBytes += info.type === 'symlink' ? Buffer.byteLength(info.linkname) : info.sizeBytes
      if (this.sizeBytes > this.maxBytes) {
        throw new SandstormError('resource_exhausted', `${this.label} unpacks to more than ${this.maxBytes} bytes (the limit, maxLayerBytes)`)
      }
    }
    if (info.path === '') return // the root entry ("./"): Docker keeps the target's own root as it is
    const slash = info.path.lastIndexOf('/')
    const parent = slash < 0 ? '' : info.path.slice(0, slash)
    const base = info.path.slice(slash + 1)
    if (this.options.whiteouts && base.startsWith(whiteoutPrefix)) return this.whiteout(header.name, parent, base)
    switch (info.type) {
      case 'directory':
        return this.directory(info)
      case 'file':
      case 'contiguous-file':
        return this.file(info, content)
      case 'symlink':
        return this.symlink(info)
      case 'link':
        return this.hardlink(info)
      case 'fifo':
        return this.fifo(info)
      case 'character-device':
      case 'block-device':
        // Docker keeps device nodes, but a node from an untrusted image could open host devices
        // wherever a sandbox's policy slips; the sandbox gets its own /dev, so none is carried.
        this.logger.debug({ entry: info.path, type: info.type }, 'device node dropped')
        return
      default:
        throw new SandstormError('invalid_argument', `tar entry ${JSON.stringify(header.name)} has an unsupported type ${info.type}; expected a file, directory, link or fifo`)
    }
  }

  /** Makes whiteouts, opaque marks and directories' metadata, in that order (the first two touch dirs' times). */
  async finish(): Promise<void> {
    const whiteouts = [...this.whiteouts].map((path) => this.abs(path))
    for (let i = 0; i < whiteouts.length; i += whiteoutBatch) {
      const batch = whiteouts.slice(i, i + whiteoutBatch)
      // Node has no mknod; one shell loop per batch rather than a process per whiteout.
      await runOrThrow('sh', ['-c', 'for p do mknod -- "$p" c 0 0 || exit 1; done', 'mknod-whiteouts', ...batch], 'making overlay whiteouts', { signal: this.options.signal })
    }
    for (const path of this.opaque) await markOpaque(this.abs(path))
    for (const [path, meta] of deepestFirst(this.dirMeta)) {
      const handle = await open(this.abs(path), constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW)
      try {
        await applyMeta(handle, meta)
      } finally {
        await handle.close()
      }
    }
  }

  private abs(path: string): string {
    return path === '' ? this.root : join(this.root, path)
  }

  /** Makes sure every component of `parent` is a real directory made here, creating missing ones as Docker does (0755, root). */
  private async ensureDir(parent: string, entryName: string): Promise<void> {
    if (this.dirs.has(parent)) return
    const slash = parent.lastIndexOf('/')
    await this.ensureDir(slash < 0 ? '' : parent.slice(0, slash), entryName)
    const st = await lstatOrNull(this.abs(parent))
    if (st === null) {
      // A whiteout made earlier in this tar at this path gives way, as to any later entry.
      this.whiteouts.delete(parent)
      // A directory the tar only implies takes a block and an inode as one it names does.
      this.options.room?.take(blockBytes, 1)
      await mkdir(this.abs(parent))
      // Not left to the umask: a lower layer's dirs must be searchable by the sandbox's users.
      await chmod(this.abs(parent), 0o755)
    } else if (st.isSymbolicLink()) {
      throw new SandstormError('invalid_argument', `tar entry ${JSON.stringify(entryName)} goes through ${parent}, a symlink; expected real directories`)
    } else if (!st.isDirectory()) {
      throw new SandstormError('invalid_argument', `tar entry ${JSON.stringify(entryName)} goes through ${parent}, which is not a directory`)
    }
    this.dirs.add(parent)
  }

  /**
   * Clears the way for an entry at `path`: its parents made sure of, and whatever is there removed
   * (unless both are directories, which merge, as in Docker). Returns whether a directory stays.
   */
  private async replace(path: string, keepDir: boolean): Promise<boolean> {
    const slash = path.lastIndexOf('/')
    await this.ensureDir(slash < 0 ? '' : path.slice(0, slash), path)
    // A later entry at `path` replaces a whiteout made there earlier in this tar.
    this.whiteouts.delete(path)
    const st = await lstatOrNull(this.abs(path))
    if (st === null) return false
    if (st.isDirectory()) {
      if (keepDir) return true
      this.forgetTree(path)
      // rm never follows symlinks inside the tree it removes.
      await rm(this.abs(path), { recursive: true, force: true })
    } else {
      await unlink(this.abs(path))
    }
    return false
  }

  /** Forgets whatever this unpack knew below (and at) a directory it is about to remove. */
  private forgetTree(path: string): void {
    const maxVisits = this.options.maxForgetVisits ?? defaultMaxForgetVisits
    this.forgetVisits += this.dirs.size + this.whiteouts.size + this.opaque.size + this.dirMeta.size
    if (this.forgetVisits > maxVisits) {
      throw new SandstormError('resource_exhausted', `${this.label} replaces directories more than its paths allow: forgetting what lay below them took more than ${maxVisits} steps (the limit, maxForgetVisits)`)
    }
    const prefix = `${path}/`
    for (const set of [this.dirs, this.whiteouts, this.opaque]) {
      for (const p of set) if (p === path || p.startsWith(prefix)) set.delete(p)
    }
    for (const p of this.dirMeta.keys()) if (p === path || p.startsWith(prefix)) this.dirMeta.delete(p)
  }

  private async directory(info: TarEntryInfo): Promise<void> {
    const kept = await this.replace(info.path, true)
    if (!kept) await mkdir(this.abs(info.path), { mode: 0o700 })
    this.dirs.add(info.path)
    this.dirMeta.set(info.path, { mode: info.mode, uid: info.uid, gid: info.gid, mtime: info.mtime, depth: depthOf(info.path) })
    if (info.xattrs.size > 0) await setXattrs(this.abs(info.path), info.xattrs, info.path, this.logger)
  }

  private async file(info: TarEntryInfo, content: Readable): Promise<void> {
    await this.replace(info.path, false)
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW
    const handle = await open(this.abs(info.path), flags, 0o600)
    try {
      let written = 0
      for await (const chunk of content as AsyncIterable<Buffer>) {
        written += chunk.length
        await writeAll(handle, chunk)
      }
      if (written !== info.sizeBytes) {
        throw new SandstormError('invalid_argument', `tar entry ${info.path} holds ${written} bytes; its header said ${info.sizeBytes}`)
      }
      // chown first: it clears setuid/setgid and file capabilities, which come after.
      await applyMeta(handle, info)
    } finally {
      await handle.close()
    }
    if (info.xattrs.size > 0) await setXattrs(this.abs(info.path), info.xattrs, info.path, this.logger)
  }

  private async symlink(info: TarEntryInfo): Promise<void> {
    await this.replace(info.path, false)
    // Kept as written, absolute or not: resolved inside the sandbox's root, never by the host.
    await symlink(info.linkname, this.abs(info.path))
    await lchown(this.abs(info.path), info.uid, info.gid)
    await lutimes(this.abs(info.path), info.mtime, info.mtime)
  }

  private async hardlink(info: TarEntryInfo): Promise<void> {
    const target = info.linkname
    const slash = target.lastIndexOf('/')
    const targetParent = slash < 0 ? '' : target.slice(0, slash)
    // The target must be something this unpack made, reached through real directories only.
    if (target === '' || !(await this.isOwnDir(targetParent))) {
      throw new SandstormError('invalid_argument', `hardlink ${info.path} points to ${target || '/'}, which is not a file of this tar; expected an earlier entry`)
    }
    const st = await lstatOrNull(this.abs(target))
    if (st === null || !(st.isFile() || st.isSymbolicLink()) || this.whiteouts.has(target)) {
      throw new SandstormError('invalid_argument', `hardlink ${info.path} points to ${target}, which is not a file of this tar; expected an earlier entry`)
    }
    if (target === info.path) return
    await this.replace(info.path, false)
    // link(2) on Linux does not follow a symlink named as the target: it links the symlink itself.
    await link(this.abs(target), this.abs(info.path))
  }

  private async fifo(info: TarEntryInfo): Promise<void> {
    // FIFOs are kept (some programs expect theirs in place): one carries no data and no privilege.
    await this.replace(info.path, false)
    await runOrThrow('mkfifo', ['-m', (info.mode & 0o777).toString(8), '--', this.abs(info.path)], `making fifo ${info.path}`, { signal: this.options.signal })
    await lchown(this.abs(info.path), info.uid, info.gid)
    await lutimes(this.abs(info.path), info.mtime, info.mtime)
  }

  private async whiteout(name: string, parent: string, base: string): Promise<void> {
    await this.ensureDir(parent, name)
    if (base === opaqueMarker) {
      this.opaque.add(parent)
      return
    }
    // Other `.wh..wh.` names are aufs's own bookkeeping (hardlink dirs), skipped as Docker does.
    if (base.startsWith(`${whiteoutPrefix}${whiteoutPrefix}`)) return
    const target = base.slice(whiteoutPrefix.length)
    if (target === '' || target === '.' || target === '..') {
      throw new SandstormError('invalid_argument', `tar entry ${JSON.stringify(name)} is a whiteout of no name; expected .wh.<name>`)
    }
    const path = parent === '' ? target : `${parent}/${target}`
    await this.replace(path, false)
    this.whiteouts.add(path)
  }

  private async isOwnDir(path: string): Promise<boolean> {
    if (this.dirs.has(path)) return true
    const slash = path.lastIndexOf('/')
    if (!(await this.isOwnDir(slash < 0 ? '' : path.slice(0, slash)))) return false
    const st = await lstatOrNull(this.abs(path))
    return st !== null && st.isDirectory()
  }
}

async function applyMeta(handle: FileHandle, meta: DirMeta): Promise<void> {
  await handle.chown(meta.uid, meta.gid)
  await handle.chmod(meta.mode)
  await handle.utimes(meta.mtime, meta.mtime)
}

/**
 * Sets xattrs on a file or directory this unpack made (`-h`: never through a symlink). A value the
 * kernel refuses (a malformed capability set) refuses the layer; a filesystem without xattrs of
 * that kind drops them, as Docker does.
 */
async function setXattrs(path: string, xattrs: Map<string, Buffer>, entry: string, logger: Logger): Promise<void> {
  for (const [name, value] of xattrs) {
    const result = await runProcess('setfattr', ['-h', '-n', name, '-v', `0s${value.toString('base64')}`, '--', path])
    if (result.exitCode === 0) continue
    if (/not supported/i.test(result.stderr)) {
      logger.warn({ entry, xattr: name }, 'xattr dropped: the filesystem does not support it')
    } else if (/invalid argument/i.test(result.stderr)) {
      throw new SandstormError('invalid_argument', `tar entry ${entry} carries xattr ${name} with a value the kernel refuses`)
    } else {
      throw new SandstormError('internal', `setting xattr ${name} on ${path} failed: ${result.stderr.trim()}`)
    }
  }
}

async function writeAll(handle: FileHandle, chunk: Buffer): Promise<void> {
  let offset = 0
  while (offset < chunk.length) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset)
    offset += bytesWritten
  }
}

async function lstatOrNull(path: string): Promise<Awaited<ReturnType<typeof lstat>> | null> {
  try {
    return await lstat(path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw error
  }
}

/** The least that an entry takes on disk: a file's data in whole blocks, a directory's block, a long symlink's. */
function diskBytesOf(info: TarEntryInfo): number {
  if (info.type === 'file' || info.type === 'contiguous-file') return inBlocks(info.sizeBytes)
  if (info.type === 'directory') return blockBytes
  if (info.type === 'symlink') return Buffer.byteLength(info.linkname) > inlineSymlinkBytes ? blockBytes : 0
  return 0
}

/** How many names deep `path` is ("" is 0, "a/b" 2), without an array per call. */
export function depthOf(path: string): number {
  if (path === '') return 0
  let depth = 1
  for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) depth++
  return depth
}

/** The entries of `dirs`, deepest first, by the depth each holds. */
export function deepestFirst<T extends { depth: number }>(dirs: Map<string, T>): [string, T][] {
  return [...dirs].sort(([, a], [, b]) => b.depth - a.depth)
}

/** An error of an unpack as a SandstormError: ours as they are, a full disk as resource_exhausted, a broken tar as invalid_argument. */
function unpackError(error: unknown, label: string): SandstormError {
  if (error instanceof SandstormError) return error
  const err = error as NodeJS.ErrnoException
  const message = err instanceof Error ? err.message : String(error)
  if (err.code === 'ENOSPC' || err.code === 'EDQUOT') {
    return new SandstormError('resource_exhausted', `no space left unpacking ${label}`, { cause: error })
  }
  if (err.code === 'ENAMETOOLONG' || err.code === 'EINVAL' || err.code === 'ENOTDIR') {
    return new SandstormError('invalid_argument', `${label} holds a path this host cannot create: ${message}`, { cause: error })
  }
  if (typeof err.code === 'string' && err.code.startsWith('E') && typeof err.errno === 'number') {
    return new SandstormError('internal', `unpacking ${label} failed: ${message}`, { cause: error })
  }
  // tar-stream's and zlib's errors: the bytes are not a (whole) tar.
  return new SandstormError('invalid_argument', `${label} is not a valid tar: ${message}`, { cause: error })
}
