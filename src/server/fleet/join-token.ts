/**
 * Join tokens (the form is parseJoinToken's, in the protocol). The CA hash in a token lets a new
 * agent pin the server's CA before it trusts anything it says (as kubeadm's discovery hash does).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** Reads the server's secret from `<dir>/join-secret`, creating it once; returns the full token. */
export function ensureJoinToken(dir: string, caSha256: string | null): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const file = join(dir, 'join-secret')
  if (!existsSync(file)) writeFileSync(file, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 })
  const secret = readFileSync(file, 'utf8').trim()
  const token = `SST1.${caSha256 ?? 'insecure'}.${secret}`
  writeFileSync(join(dir, 'join-token'), `${token}\n`, { mode: 0o600 })
  return token
}

/** Does a presented secret equal the server's, in constant time. */
export function secretMatches(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}
