import { InvalidArgumentError } from '@sandstorm/sdk'
import { idPattern } from '../shared/index.js'

/** One side of `cp`: a path inside a sandbox (`ID:/abs/path`), a local path, or `-` (stdin/stdout). */
export type CopyLocation = { kind: 'sandbox'; sandboxId: string; path: string } | { kind: 'local'; path: string } | { kind: 'stdio' }

/**
 * Parses `ID:/abs/path` as a sandbox path; anything whose part before the first `:` does not
 * look like a sandbox id (no `/`, no `.`) is a local path, so `./a:b` stays local.
 */
export function parseCopyLocation(arg: string): CopyLocation {
  if (arg === '-') return { kind: 'stdio' }
  const colon = arg.indexOf(':')
  const prefix = colon > 0 ? arg.slice(0, colon) : ''
  if (!prefix || /[/.\\]/.test(prefix)) return { kind: 'local', path: arg }
  const path = arg.slice(colon + 1)
  if (!idPattern.test(prefix)) {
    throw new InvalidArgumentError('invalid_argument', `expected a sandbox id such as sb-k3j9x0q2m1c8v7d4 before ":", got "${prefix}"`)
  }
  if (!path.startsWith('/')) {
    throw new InvalidArgumentError('invalid_argument', `expected an absolute path after "${prefix}:", got "${path}"`)
  }
  return { kind: 'sandbox', sandboxId: prefix, path }
}
