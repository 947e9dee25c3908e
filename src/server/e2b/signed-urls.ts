/**
 * envd's signed file URLs (`sandbox.downloadUrl` / `uploadUrl`): `signature` is
 * `v1_` + base64(SHA-256("<path>:<read|write>:<user>:<envd access token>[:<expiry>]")), padding
 * dropped, and `signature_expiration` a Unix time in seconds. The SDK signs with the access token
 * it got at create; the server derives the same token, so a URL opens one file, one way, as one
 * user, until it expires, with no API key and no token sent.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { SandstormError } from '../../shared/index.js'

/** What a signed request names, from its query. */
export interface SignedQuery {
  /** The path as given (unresolved), or "" when none. */
  path: string
  /** The `username` as given, or "" when none (the default user). */
  user: string
  signature: string | undefined
  /** `signature_expiration` as given. */
  expiration: string | undefined
}

/** The signature of a file URL, as the SDK computes it. */
export function fileSignature(query: Omit<SignedQuery, 'signature'>, operation: 'read' | 'write', token: string): string {
  const raw = [query.path, operation, query.user, token, ...(query.expiration !== undefined ? [query.expiration] : [])].join(':')
  return 'v1_' + createHash('sha256').update(raw).digest('base64').replace(/=+$/, '')
}

/** Whether `query.signature` is this token's, compared in constant time. */
export function signatureMatches(query: SignedQuery, operation: 'read' | 'write', token: string): boolean {
  if (query.signature === undefined) return false
  const expected = Buffer.from(fileSignature(query, operation, token))
  const given = Buffer.from(query.signature)
  return given.length === expected.length && timingSafeEqual(given, expected)
}

/**
 * Checks a signed request as envd does, with envd's words: a missing or wrong signature, then an
 * expiry in the past (checked after the signature, so a changed expiry is a wrong signature).
 * All answer 401.
 */
export function checkSignature(query: SignedQuery, operation: 'read' | 'write', token: string, nowMs = Date.now()): void {
  if (query.signature === undefined) throw new SandstormError('unauthenticated', 'missing signature query parameter')
  if (query.expiration !== undefined && !/^-?[0-9]{1,15}$/.test(query.expiration)) {
    throw new SandstormError('invalid_argument', `signature_expiration: expected a Unix time in seconds, got ${JSON.stringify(query.expiration.slice(0, 40))}`)
  }
  if (!signatureMatches(query, operation, token)) throw new SandstormError('unauthenticated', 'invalid signature')
  if (query.expiration !== undefined && Number(query.expiration) < Math.floor(nowMs / 1000)) {
    throw new SandstormError('unauthenticated', 'signature is already expired')
  }
}
