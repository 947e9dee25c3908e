/** Who an envd call is for: the sandbox (E2b-Sandbox-Id), its access token, and the user (Basic auth). */
import { posix } from 'node:path'
import { idPattern, SandstormError } from '../../shared/index.js'
import type { SandboxService } from '../sandbox-service.js'
import type { AccessTokens } from '../access-tokens.js'

/** E2B's default user in its base image; commands and file ops run as this user unless told otherwise. */
export const defaultUser = 'user'

/** One envd call's sandbox and user. */
export interface EnvdScope {
  sandboxId: string
  user: string
  /** The caller named the user (Basic auth); else `user` is E2B's default, which an image template's own USER overrides for commands. */
  userGiven: boolean
  /** The user's home: relative paths resolve against it, commands start in it. */
  home: string
}

/** A header reader: Connect's `Headers` and Hono's requests both fit. */
export interface HeaderSource {
  get(name: string): string | null
}

/**
 * Checks the sandbox header and the access token and that the sandbox runs. A sandbox that is
 * gone, or paused, answers `unavailable` (E2B's proxy answers 502: the SDK then reports the
 * sandbox as not running).
 */
export function envdScope(headers: HeaderSource, sandboxes: SandboxService, tokens: AccessTokens): EnvdScope {
  return runningScope(envdSandboxId(headers, tokens), headers, sandboxes)
}

/** The sandbox an envd call names, once its access token is checked: from the headers alone, so before any body is read. */
export function envdSandboxId(headers: HeaderSource, tokens: AccessTokens): string {
  const sandboxId = headers.get('e2b-sandbox-id')
  if (!sandboxId) throw new SandstormError('invalid_argument', 'missing header E2b-Sandbox-Id: expected the id of the sandbox to reach')
  // Checked before the token: a traffic token of X is the HMAC of "traffic:X", so it would pass as the envd token of that name.
  if (!idPattern.test(sandboxId)) throw new SandstormError('invalid_argument', `header E2b-Sandbox-Id: expected a sandbox id such as sb-0123456789abcdef, got ${JSON.stringify(sandboxId.slice(0, 64))}`)
  if (!tokens.verify(sandboxId, headers.get('x-access-token') ?? undefined)) {
    throw new SandstormError('unauthenticated', `wrong or missing X-Access-Token for sandbox "${sandboxId}"`)
  }
  return sandboxId
}

/** The scope of a sandbox whose caller is already authorized (by token or by a signed URL): it must run. */
export function runningScope(sandboxId: string, headers: HeaderSource, sandboxes: SandboxService): EnvdScope {
  let state: string
  try {
    const record = sandboxes.requireStarted(sandboxId)
    state = record.state
    if (state !== 'paused' && record.expiresAtMs <= Date.now()) throw new SandstormError('not_found', 'past its timeout')
    // Its connections (into ingress too) drop while it is destroyed: a probe of /health then must not hear that it runs.
    if (sandboxes.destroying(sandboxId)) throw new SandstormError('not_found', 'being killed')
  } catch {
    throw new SandstormError('unavailable', `sandbox "${sandboxId}" is not running (it was killed or reached its timeout)`)
  }
  if (state !== 'running') throw new SandstormError('unavailable', `sandbox "${sandboxId}" is ${state}: connect to it to resume it`)
  const given = userOf(headers.get('authorization'))
  const user = given ?? defaultUser
  return { sandboxId, user, userGiven: given !== undefined, home: homeOf(user) }
}

/** The user of `Authorization: Basic base64("<user>:")`, as the SDK sends it. */
function userOf(header: string | null): string | undefined {
  const encoded = /^Basic\s+(\S+)$/i.exec(header ?? '')?.[1]
  if (!encoded) return undefined
  const user = Buffer.from(encoded, 'base64').toString('utf8').split(':')[0]
  if (!user) return undefined
  if (!/^[a-z_][a-z0-9_-]*$/.test(user)) throw new SandstormError('invalid_argument', `user "${user}": expected a user name such as "user" or "root"`)
  return user
}

/** Home directories as Debian lays them out; the agent resolves the real one for commands. */
export function homeOf(user: string): string {
  return user === 'root' ? '/root' : `/home/${user}`
}

/** An absolute, normalised path: relative ones are taken from the user's home, as envd does. */
export function resolvePath(scope: EnvdScope, path: string): string {
  if (path.includes('\0')) throw new SandstormError('invalid_argument', 'a path without NUL bytes')
  const expanded = path === '~' ? scope.home : path.startsWith('~/') ? scope.home + path.slice(1) : path
  return posix.resolve(scope.home, expanded || '.')
}
