import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { newId, readSecretFile, SandstormError } from '../shared/index.js'
import type { Logger } from '../shared/index.js'
import type { CatalogDb } from './db.js'

/** The key this server prints for its owner, and where it lives. */
export interface ApiKeyFile {
  apiKey: string
  apiKeyPath: string
}

/** Checks a presented key against the stored hashes. */
export type ApiKeyCheck = (presented: string) => boolean

/** The shape of each form a key can take (createApiKey's): anything else is no key, without a hash or a lookup. */
const keyShapes: Record<ApiKeyForm, RegExp> = { sandstorm: /^ss_[0-9a-f]{64}$/, e2b: /^e2b_[0-9a-f]{40}$/ }
const keyShape = keyShapes.sandstorm
/** Whether a string has the shape of an API key (either form): what has not is no key, without a hash or a lookup. */
export const isKeyShaped = (key: string): boolean => Object.values(keyShapes).some((shape) => shape.test(key))

/**
 * Makes sure `<dataDir>/api-key` holds a key whose hash is in the database: on first start it
 * creates one (`ss_` + 32 random bytes in hex, file mode 0600); later starts reuse it. Only the
 * sha256 is stored, so a copy of the database does not give access.
 */
export function ensureApiKey(dataDir: string, db: CatalogDb, logger: Logger): ApiKeyFile {
  const apiKeyPath = join(dataDir, 'api-key')
  let apiKey = readKeyFile(apiKeyPath)
  if (apiKey === undefined) {
    apiKey = `ss_${randomBytes(32).toString('hex')}`
    // 'wx': never overwrite a key that another process wrote a moment ago.
    writeFileSync(apiKeyPath, `${apiKey}\n`, { mode: 0o600, flag: 'wx' })
    logger.info({ apiKeyPath }, 'created an API key')
  }
  const hash = sha256Hex(apiKey)
  const known = db.prepare('SELECT 1 FROM api_keys WHERE sha256 = ?').get(hash)
  if (!known) {
    db.prepare('INSERT INTO api_keys (id, sha256, created_at) VALUES (?, ?, ?)').run(newId('key'), hash, Date.now())
  }
  return { apiKey, apiKeyPath }
}

/**
 * A check that hashes the presented key and compares it with every stored hash in constant time.
 * A key found once is remembered (by its hash) and not looked up again: keys are only ever added,
 * and every request presents one, so the lookup would sit on every request. A key not found is
 * looked up each time, since one added by another process counts at once.
 */
export function createApiKeyCheck(db: CatalogDb): ApiKeyCheck {
  const hashes = db.prepare<[], { sha256: string }>('SELECT sha256 FROM api_keys')
  const verified = new Set<string>()
  return (presented) => {
    // The ingress asks this of every proxied request with an Authorization header (an app's own
    // bearer tokens too): what cannot be a key costs nothing.
    if (!isKeyShaped(presented)) return false
    const digest = createHash('sha256').update(presented).digest()
    const hex = digest.toString('hex')
    if (verified.has(hex)) return true
    let ok = false
    // No early exit: the time taken does not say which stored key came closest.
    for (const { sha256 } of hashes.all()) {
      if (timingSafeEqual(digest, Buffer.from(sha256, 'hex'))) ok = true
    }
    // Bounded: a server has a handful of keys.
    if (ok && verified.size < 1024) verified.add(hex)
    return ok
  }
}

/** The token of an `Authorization: Bearer <token>` header, if it is one. */
export function bearerToken(authorization: string | undefined): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1]
}

/** The API key a request presents: `Authorization: Bearer <key>`, else `X-API-Key: <key>`. */
export function presentedApiKey(headers: { authorization?: string | undefined; 'x-api-key'?: string | string[] | undefined }): string | undefined {
  const header = headers['x-api-key']
  return bearerToken(headers.authorization) ?? (typeof header === 'string' ? header : undefined)
}

function readKeyFile(path: string): string | undefined {
  // This user's, mode 0600, not empty: checked as it is loaded (a looser one is refused, not fixed).
  const key = readSecretFile(path, 'the API key file', 1)
  if (key === undefined) return undefined
  if (!keyShape.test(key)) {
    throw new SandstormError('failed_precondition', `${path}: expected an API key "ss_" + 64 hex digits, got ${key.length} other characters`)
  }
  return key
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

/** The forms a new key can take: Sandstorm's own, or E2B's `e2b_` + 40 hex digits (what E2B's tools expect). */
export type ApiKeyForm = 'sandstorm' | 'e2b'

/** Makes a new key, stores its sha256 and returns the key (shown once; only the hash is kept). */
export function createApiKey(db: CatalogDb, form: ApiKeyForm = 'sandstorm'): string {
  const apiKey = form === 'e2b' ? `e2b_${randomBytes(20).toString('hex')}` : `ss_${randomBytes(32).toString('hex')}`
  db.prepare('INSERT INTO api_keys (id, sha256, created_at) VALUES (?, ?, ?)').run(newId('key'), sha256Hex(apiKey), Date.now())
  return apiKey
}
