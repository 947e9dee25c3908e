/**
 * The sources of a COPY or ADD found in the build context (paths and Go-style globs, as Docker
 * matches them) and hashed for the step's cache key. The context is untrusted: nothing here
 * follows a symlink in it (a symlink is a source like a file, copied as a symlink), a path through
 * a symlink or out of the context with `..` is refused, and `.dockerignore`d paths are absent.
 */
import { createHash } from 'node:crypto'
import type { Stats } from 'node:fs'
import { constants } from 'node:fs'
import { lstat, open, readdir, readlink } from 'node:fs/promises'
import { join, posix } from 'node:path'
import { SandstormError } from '../../shared/index.js'
import { createIgnore, type ContextFilter } from './dockerignore.js'

/** One thing a source brings: the source itself, or something under a directory source. */
export interface ContextEntry {
  /** Its path in the context (`/`-separated, relative). */
  rel: string
  /** Its path under the source (`''` for the source itself). */
  sub: string
  type: 'file' | 'dir' | 'symlink'
  /** Permission bits (with setuid, setgid, sticky). */
  mode: number
  size: number
  mtime: Date
  linkTarget?: string
}

/** One matched source: a file, a symlink, or a directory with everything under it. */
export interface ContextSource {
  /** Its path in the context ('' for the context itself). */
  rel: string
  type: ContextEntry['type']
  /** The source (sub '') first, then for a directory what it holds, parents before children. */
  entries: ContextEntry[]
}

/** The sources of one step and the digest of their content. */
export interface ResolvedSources {
  sources: ContextSource[]
  /** sha256 hex of names, types, modes and bytes (not times: Docker's rule too). */
  digest: string
}

const globChars = /[*?[\\]/

/** Finds `patterns` (as written in the step, expanded) in `contextDir`; throws `invalid_argument` for a missing or escaping one. */
export async function resolveSources(contextDir: string, patterns: readonly string[], filter: ContextFilter, where: string): Promise<ResolvedSources> {
  const refuse = (why: string): never => {
    throw new SandstormError('invalid_argument', `${where}: ${why}`)
  }
  const sources: ContextSource[] = []
  for (const pattern of patterns) {
    const clean = posix.normalize(pattern.replace(/^\/+/, '') || '.')
    if (clean === '..' || clean.startsWith('../')) refuse(`source ${JSON.stringify(pattern)} is outside the build context`)
    const parts = clean === '.' ? [] : clean.replace(/\/+$/, '').split('/')
    const matched = await match(contextDir, parts, filter, pattern, refuse)
    if (matched.length === 0) {
      refuse(globChars.test(clean) ? `no file in the build context matches ${JSON.stringify(pattern)}` : `${JSON.stringify(pattern)} is not in the build context${filter.ignores(clean) ? ' (excluded by .dockerignore)' : ''}`)
    }
    for (const { rel, stat } of matched) sources.push(await sourceOf(contextDir, rel, stat, filter, refuse))
  }
  return { sources, digest: await digestOf(contextDir, sources) }
}

async function match(contextDir: string, parts: string[], filter: ContextFilter, pattern: string, refuse: (why: string) => never): Promise<{ rel: string; stat: Stats }[]> {
  let current: { rel: string; stat: Stats }[] = [{ rel: '', stat: await lstat(contextDir) }]
  for (const [i, part] of parts.entries()) {
    const last = i === parts.length - 1
    const next: { rel: string; stat: Stats }[] = []
    for (const { rel, stat } of current) {
      if (!stat.isDirectory()) {
        // A glob skips what is not a directory; a plain path through a symlink is refused.
        if (stat.isSymbolicLink() && !globChars.test(pattern)) refuse(`source ${JSON.stringify(pattern)} goes through the symlink ${JSON.stringify(rel)}, which is not followed`)
        continue
      }
      const names = globChars.test(part) ? (await readdir(join(contextDir, rel))).filter(matcher(part)).sort() : [part]
      for (const name of names) {
        const childRel = rel === '' ? name : `${rel}/${name}`
        if (filter.ignores(childRel) && (last || !(await hasException(filter)))) continue
        const childStat = await lstat(join(contextDir, childRel)).catch(() => null)
        if (childStat) next.push({ rel: childRel, stat: childStat })
      }
    }
    current = next
  }
  return current.filter(({ rel }) => !filter.ignores(rel))
}

/** Whether a path under an ignored directory may come back (a `!` line). */
async function hasException(filter: ContextFilter): Promise<boolean> {
  return filter.patterns.some((p) => p.startsWith('!'))
}

/** One glob segment as Docker's filepath.Match reads it (`*` matches dot files too). */
function matcher(glob: string): (name: string) => boolean {
  const ig = createIgnore({ ignorecase: false }).add(glob)
  return (name) => ig.ignores(name)
}

async function sourceOf(contextDir: string, rel: string, stat: Stats, filter: ContextFilter, refuse: (why: string) => never): Promise<ContextSource> {
  const type = typeOf(stat, rel, refuse)
  const entries: ContextEntry[] = [await entryOf(contextDir, rel, '', stat, type)]
  if (type === 'dir') await walk(contextDir, rel, '', filter, entries, refuse)
  return { rel, type, entries }
}

async function walk(contextDir: string, rel: string, sub: string, filter: ContextFilter, out: ContextEntry[], refuse: (why: string) => never): Promise<void> {
  const dir = rel === '' ? sub : sub === '' ? rel : `${rel}/${sub}`
  for (const name of (await readdir(join(contextDir, dir))).sort()) {
    const childRel = dir === '' ? name : `${dir}/${name}`
    const childSub = sub === '' ? name : `${sub}/${name}`
    const stat = await lstat(join(contextDir, childRel))
    const type = typeOf(stat, childRel, refuse)
    // An excluded directory is still walked when a `!` line may bring back something under it.
    if (filter.ignores(childRel)) {
      if (type === 'dir' && (await hasException(filter))) await walkExcluded(contextDir, rel, childSub, filter, out, refuse)
      continue
    }
    out.push(await entryOf(contextDir, childRel, childSub, stat, type))
    if (type === 'dir') await walk(contextDir, rel, childSub, filter, out, refuse)
  }
}

/** Walks an excluded directory for entries a `!` line brings back (their parents come with them, as Docker does). */
async function walkExcluded(contextDir: string, rel: string, sub: string, filter: ContextFilter, out: ContextEntry[], refuse: (why: string) => never): Promise<void> {
  const found: ContextEntry[] = []
  await walk(contextDir, rel, sub, filter, found, refuse)
  if (found.length === 0) return
  const dirRel = rel === '' ? sub : `${rel}/${sub}`
  out.push(await entryOf(contextDir, dirRel, sub, await lstat(join(contextDir, dirRel)), 'dir'), ...found)
}

function typeOf(stat: Stats, rel: string, refuse: (why: string) => never): ContextEntry['type'] {
  if (stat.isFile()) return 'file'
  if (stat.isDirectory()) return 'dir'
  if (stat.isSymbolicLink()) return 'symlink'
  return refuse(`${JSON.stringify(rel)} in the build context is not a file, directory or symlink`)
}

async function entryOf(contextDir: string, rel: string, sub: string, stat: Stats, type: ContextEntry['type']): Promise<ContextEntry> {
  const entry: ContextEntry = { rel, sub, type, mode: stat.mode & 0o7777, size: type === 'file' ? stat.size : 0, mtime: stat.mtime }
  if (type === 'symlink') entry.linkTarget = await readlink(join(contextDir, rel))
  return entry
}

/** Opens a context file for reading, never through a symlink, checking it is still a regular file. */
export async function openContextFile(contextDir: string, rel: string): Promise<import('node:fs/promises').FileHandle> {
  const handle = await open(join(contextDir, rel), constants.O_RDONLY | constants.O_NOFOLLOW)
  const stat = await handle.stat()
  if (!stat.isFile()) {
    await handle.close()
    throw new SandstormError('invalid_argument', `${JSON.stringify(rel)} in the build context changed while read: expected a regular file`)
  }
  return handle
}

async function digestOf(contextDir: string, sources: readonly ContextSource[]): Promise<string> {
  const hash = createHash('sha256')
  for (const source of sources) {
    hash.update(`source\0${posix.basename(source.rel)}\0${source.type}\n`)
    for (const e of source.entries) {
      hash.update(`${e.sub}\0${e.type}\0${e.mode.toString(8)}\0${e.linkTarget ?? ''}\0${e.size}\0`)
      if (e.type === 'file') {
        const handle = await openContextFile(contextDir, e.rel)
        try {
          for await (const chunk of handle.createReadStream({ autoClose: false })) hash.update(chunk as Buffer)
        } finally {
          await handle.close()
        }
      }
      hash.update('\n')
    }
  }
  return hash.digest('hex')
}
