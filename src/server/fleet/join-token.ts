/**
 * Join tokens (the form is parseJoinToken's, in the protocol). The CA hash in a token lets a new
 * agent pin the server's CA before it trusts anything it says (as kubeadm's discovery hash does).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs'
import { readSecretFile } from '../../shared/index.js'
import { join } from 'node:path'

/** Reads the server's secret from `<dir>/join-secret`, creating it once; returns the full token. */
export function ensureJoinToken(dir: string, caSha256: string | null): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const file = join(dir, 'join-secret')
  if (!existsSync(file)) writeFileSync(file, newSecret(), { mode: 0o600 })
  // 24 random bytes make 32 characters; fewer is a weak or broken secret.
  const secret = readSecretFile(file, 'the join secret', 32)!
  const token = `SST1.${caSha256 ?? 'insecure'}.${secret}`
  writeFileSync(join(dir, 'join-token'), `${token}\n`, { mode: 0o600 })
  return token
}

/**
 * Replaces the server's secret with a new one and returns the new full token: a token that left
 * with a removed host (it was copied there to join) admits nothing from then on.
 */
export function rotateJoinToken(dir: string, caSha256: string | null): string {
  const file = join(dir, 'join-secret')
  writeFileSync(`${file}.new`, newSecret(), { mode: 0o600 })
  renameSync(`${file}.new`, file)
  return ensureJoinToken(dir, caSha256)
}

/** A secret's file: 24 random bytes, 32 characters. */
const newSecret = (): string => `${randomBytes(24).toString('base64url')}\n`

/** Does a presented secret equal the server's, in constant time. */
export function secretMatches(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}
