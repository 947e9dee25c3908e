/**
 * A build context's `.dockerignore`: the paths it excludes are not in the context at all for
 * COPY and ADD, and so change nothing in a step's cache key. Matching is @balena/dockerignore's
 * (Docker's own rules: Go globs, `**`, `!` exceptions, the last matching line wins).
 */
import { constants } from 'node:fs'
import { lstat, open } from 'node:fs/promises'
import { join } from 'node:path'
import ignoreModule from '@balena/dockerignore'
import { SandstormError } from '../../shared/index.js'

/** Which context paths are excluded. */
export interface ContextFilter {
  /** Is `rel` (a context-relative path with `/`, no leading `/`) excluded? */
  ignores(rel: string): boolean
  /** The patterns read (for records). */
  readonly patterns: readonly string[]
}

/** @balena/dockerignore's factory: the package is CommonJS (`module.exports = factory`) while its types declare an ES default export. */
export const createIgnore = ignoreModule as unknown as typeof ignoreModule.default

const maxDockerignoreBytes = 1024 * 1024

/** The filter of `.dockerignore` text (comments, blank lines and leading `/` dropped, as Docker does). */
export function parseDockerignore(text: string): ContextFilter {
  const patterns: string[] = []
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const negated = line.startsWith('!')
    let pattern = (negated ? line.slice(1).trim() : line).replace(/^\/+/, '')
    if (pattern === '') continue
    pattern = pattern.replace(/\/+$/, '') || pattern
    patterns.push(negated ? `!${pattern}` : pattern)
  }
  const ig = createIgnore({ ignorecase: false }).add(patterns)
  return { patterns, ignores: (rel) => rel !== '' && ig.ignores(rel) }
}

/** The filter of `contextDir/.dockerignore`, or one that excludes nothing when there is none. */
export async function loadDockerignore(contextDir: string): Promise<ContextFilter> {
  const path = join(contextDir, '.dockerignore')
  const stat = await lstat(path).catch(() => null)
  if (!stat) return parseDockerignore('')
  if (!stat.isFile()) throw new SandstormError('invalid_argument', 'the build context\'s .dockerignore is not a regular file (a symlink is not followed)')
  if (stat.size > maxDockerignoreBytes) throw new SandstormError('invalid_argument', `the build context's .dockerignore is ${stat.size} bytes; expected at most ${maxDockerignoreBytes}`)
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
  try {
    return parseDockerignore(await handle.readFile('utf8'))
  } finally {
    await handle.close()
  }
}
