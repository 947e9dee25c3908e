/**
 * Looking up paths in a chain of overlay layers as the merged root would show them, without
 * mounting it: whiteouts hide what is below, a non-directory hides lower directories, and symlinks
 * are resolved inside the root (an absolute target or `..` never leaves it). Nothing here follows
 * a symlink on the host: every host path it touches has only directories before its last part,
 * each checked with lstat on the way down.
 */
import type { Stats } from 'node:fs'
import { constants } from 'node:fs'
import { lstat, open, readlink } from 'node:fs/promises'
import { join } from 'node:path'
import { SandstormError } from '../../shared/index.js'

/** An entry of the merged root: the topmost layer that has it. */
export interface ChainEntry {
  /** The layer directory holding it. */
  layerDir: string
  /** Its host path (`layerDir/rel`). */
  hostPath: string
  stat: Stats
}

/** Where a path led in the merged root. */
export interface ChainLookup {
  /** The path with every symlink before it resolved (no leading `/`; '' is the root). */
  rel: string
  /** The entry there, or null when the root has nothing there. */
  entry: ChainEntry | null
}

/** Options of lookupInChain. */
export interface LookupOptions {
  /** Resolve a symlink at the last part too (a destination directory), not only before it. @default false */
  followLast?: boolean
}

const maxSymlinkHops = 40

/** Is this an overlay whiteout (a 0/0 character device)? */
export function isWhiteout(stat: Stats): boolean {
  return stat.isCharacterDevice() && stat.rdev === 0
}

/** `path` looked up in the root made of `lowerDirs` (topmost first). */
export async function lookupInChain(lowerDirs: readonly string[], path: string, options: LookupOptions = {}): Promise<ChainLookup> {
  let pending = split(path)
  let hops = 0
  for (;;) {
    const resolved: string[] = []
    // The layers in which `resolved` is a directory that the merged root shows.
    let layers = [...lowerDirs]
    let restart: string[] | null = null
    let entry: ChainEntry | null = null
    for (let i = 0; i < pending.length; i++) {
      const name = pending[i]!
      const last = i === pending.length - 1
      const found = await topmost(layers, [...resolved, name])
      if (!found) {
        // Nothing there: the rest cannot hold symlinks.
        return { rel: [...resolved, ...pending.slice(i)].join('/'), entry: null }
      }
      if (found.entry.stat.isSymbolicLink() && (!last || options.followLast)) {
        if (++hops > maxSymlinkHops) throw new SandstormError('invalid_argument', `/${path}: more than ${maxSymlinkHops} symlinks to follow (a loop?)`)
        const target = await readlink(found.entry.hostPath)
        restart = [...(target.startsWith('/') ? [] : resolved), ...target.split('/'), ...pending.slice(i + 1)]
        break
      }
      resolved.push(name)
      if (last) {
        entry = found.entry
        break
      }
      if (!found.entry.stat.isDirectory()) return { rel: [...resolved, ...pending.slice(i + 1)].join('/'), entry: null }
      layers = found.dirLayers
    }
    if (restart) {
      pending = normalize(restart)
      continue
    }
    return { rel: resolved.join('/'), entry: pending.length === 0 ? await rootEntry(lowerDirs) : entry }
  }
}

/**
 * The regular file at `path` in the chain (its last part never followed), at most `maxBytes`;
 * null when the chain has none there or it is not a regular file.
 */
export async function readChainFile(lowerDirs: readonly string[], path: string, maxBytes: number): Promise<Buffer | null> {
  const { entry } = await lookupInChain(lowerDirs, path)
  if (!entry?.stat.isFile()) return null
  if (entry.stat.size > maxBytes) throw new SandstormError('invalid_argument', `/${path} in the image is ${entry.stat.size} bytes; expected at most ${maxBytes}`)
  const handle = await open(entry.hostPath, constants.O_RDONLY | constants.O_NOFOLLOW)
  try {
    const buf = Buffer.alloc(maxBytes + 1)
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0)
    if (bytesRead > maxBytes) throw new SandstormError('invalid_argument', `/${path} in the image grew past ${maxBytes} bytes while read`)
    return buf.subarray(0, bytesRead)
  } finally {
    await handle.close()
  }
}

async function rootEntry(lowerDirs: readonly string[]): Promise<ChainEntry | null> {
  const top = lowerDirs[0]
  return top === undefined ? null : { layerDir: top, hostPath: top, stat: await lstat(top) }
}

/** The topmost entry at `parts` among `layers`, and the layers below it that merge as directories. */
async function topmost(layers: readonly string[], parts: string[]): Promise<{ entry: ChainEntry; dirLayers: string[] } | null> {
  let entry: ChainEntry | null = null
  const dirLayers: string[] = []
  for (const layerDir of layers) {
    const hostPath = join(layerDir, ...parts)
    const stat = await lstat(hostPath).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return null
      throw error
    })
    if (!stat) continue
    if (isWhiteout(stat)) break
    if (!entry) entry = { layerDir, hostPath, stat }
    // A non-directory hides what lower layers have there; directories merge.
    if (!stat.isDirectory()) break
    dirLayers.push(layerDir)
  }
  return entry ? { entry, dirLayers } : null
}

function split(path: string): string[] {
  return normalize(path.split('/'))
}

/** Parts with `.` and empty ones dropped and `..` applied, never above the root. */
function normalize(parts: string[]): string[] {
  const out: string[] = []
  for (const part of parts) {
    if (part === '' || part === '.') continue
    if (part === '..') out.pop()
    else out.push(part)
  }
  return out
}
