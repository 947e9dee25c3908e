/**
 * `.dockerignore` rules, read once for both sides of a Dockerfile build: the client leaves what
 * they exclude out of the context it uploads, and the server leaves it out of what COPY and ADD
 * see. Matching is @balena/dockerignore's (Docker's own rules: Go globs, `**`, `!` exceptions, the
 * last matching line wins).
 */
import ignoreModule from '@balena/dockerignore'

/** Which context paths are excluded. */
export interface DockerignoreFilter {
  /** Is `rel` (a context-relative path with `/`, no leading `/`) excluded? */
  ignores(rel: string): boolean
  /** The patterns read (for records). */
  readonly patterns: readonly string[]
  /** Some pattern is an exception (`!`): an excluded directory may still hold paths that are not. */
  readonly hasExceptions: boolean
}

/** @balena/dockerignore's factory: the package is CommonJS (`module.exports = factory`) while its types declare an ES default export. */
const createIgnore = ignoreModule as unknown as typeof ignoreModule.default

/** The filter of `.dockerignore` text (comments, blank lines and leading `/` dropped, as Docker does). */
export function parseDockerignore(text: string): DockerignoreFilter {
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
  return { patterns, hasExceptions: patterns.some((p) => p.startsWith('!')), ignores: (rel) => rel !== '' && ig.ignores(rel) }
}
