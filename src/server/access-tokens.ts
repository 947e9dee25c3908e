import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { readSecretFile, SandstormError } from '../shared/index.js'
import { join } from 'node:path'

/**
 * Per-sandbox tokens, derived so that nothing is stored per sandbox: envd access tokens (E2B's
 * `envdAccessToken`, sent as `X-Access-Token` on envd calls) and traffic access tokens (E2B's
 * `trafficAccessToken`, which a private sandbox's ports require).
 */
export interface AccessTokens {
  /** The token of this kind for this sandbox. */
  tokenFor(sandboxId: string): string
  verify(sandboxId: string, presented: string | undefined): boolean
}

/**
 * Tokens are HMAC-SHA256(secret, sandbox id) with a secret kept in `<dataDir>/e2b-secret` (mode
 * 0600, made on first use), so they survive restarts and a leaked token opens one sandbox only.
 * Each kind is its own: a traffic token is HMAC(secret, "traffic:" + id), so it never opens envd.
 */
export function createAccessTokens(dataDir: string, kind: 'envd' | 'traffic' = 'envd'): AccessTokens {
  const secret = loadSecret(join(dataDir, 'e2b-secret'))
  const prefix = kind === 'envd' ? '' : `${kind}:`
  const tokenFor = (sandboxId: string): string => createHmac('sha256', secret).update(prefix + sandboxId).digest('hex')
  return {
    tokenFor,
    verify(sandboxId, presented) {
      if (presented === undefined) return false
      const expected = Buffer.from(tokenFor(sandboxId))
      const given = Buffer.from(presented)
      return given.length === expected.length && timingSafeEqual(given, expected)
    },
  }
}

/** The secret as hex: 32 random bytes at least, in a file that only this user can read. */
function readSecret(path: string): Buffer | undefined {
  const text = readSecretFile(path, 'the token secret', 64)
  if (text === undefined) return undefined
  if (!/^(?:[0-9a-f]{2})+$/.test(text)) throw new SandstormError('failed_precondition', `the token secret ${path}: expected hex digits (remove it to make a new one)`)
  return Buffer.from(text, 'hex')
}

function loadSecret(path: string): Buffer {
  const found = readSecret(path)
  if (found) return found
  const secret = randomBytes(32)
  try {
    // 'wx': a server starting at the same moment may have written one; then use that.
    writeFileSync(path, `${secret.toString('hex')}\n`, { mode: 0o600, flag: 'wx' })
    return secret
  } catch {
    return readSecret(path)!
  }
}
