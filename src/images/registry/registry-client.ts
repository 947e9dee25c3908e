/**
 * HTTP to one repository of a registry over the distribution API: the scheme, the bearer-token and
 * basic auth flows, retries of transient failures, and errors that name the registry.
 */
import { setTimeout as delay } from 'node:timers/promises'
import { SandstormError, throwIfAborted } from '../../shared/index.js'
import type { PullOptions, RegistryCredentials } from '../contracts.js'
import { isLoopbackHost, type ImageReference } from '../reference.js'
import { checkFetchTarget, checkRegistryTarget } from './fetch-targets.js'
import { readLimited } from './read-limited.js'
import { parseAuthChallenge } from './www-authenticate.js'

/** Options of a registry client. */
export interface RegistryClientOptions extends Pick<PullOptions, 'insecureRegistries'> {
  /** Credentials for the registry (already looked up). @default none: anonymous */
  credentials?: RegistryCredentials
  /** Tries of a request that fails for a transient reason (connection reset, 429, 5xx). @default 4 */
  attempts?: number
  /** The wait before the first retry, doubled after each. @default 250 */
  backoffMs?: number
}

/** One repository of one registry, as an authenticated HTTP client. */
export interface RegistryClient {
  /** `scheme://host` of the registry's API. */
  readonly base: string
  /**
   * GETs `path` (`/v2/<repo>/manifests/<ref>`): the response once it is not a 401/403, a 429 or a
   * 5xx. Refused credentials, an unreachable host and failures that outlast the retries throw.
   */
  get(path: string, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<Response>
}

const transientStatuses = new Set([408, 425, 429, 500, 502, 503, 504])
// Errors of a connection that may work when tried again (a name that does not resolve will not).
const permanentNetworkCodes = new Set(['ENOTFOUND', 'ERR_INVALID_URL', 'ERR_TLS_CERT_ALTNAME_INVALID', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'CERT_HAS_EXPIRED', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'])
const maxRetryAfterMs = 10_000
const redirectStatuses = new Set([301, 302, 303, 307, 308])
/** Redirects followed per request, as fetch's own limit is 20; a registry's blob takes one or two. */
const maxRedirects = 10
/** The most read of a token service's answer. */
const maxTokenBytes = 1024 * 1024

/**
 * A client for `ref`'s repository: HTTPS, but plain HTTP for the insecure registries the operator
 * listed. A registry on this host's own addresses (loopback) or on a cloud's metadata service is
 * refused before any request unless it is listed: a Dockerfile's FROM names it, not the operator.
 */
export function createRegistryClient(ref: ImageReference, options: RegistryClientOptions = {}): RegistryClient {
  const { credentials, attempts = 4, backoffMs = 250 } = options
  const listed = (options.insecureRegistries ?? []).includes(ref.registry) || (options.insecureRegistries ?? []).includes(ref.apiHost)
  // A listed registry on loopback may send the server on to loopback (its blob storage there).
  const loopbackRegistry = listed && isLoopbackHost(ref.apiHost)
  const plainHttp = listed
  const base = `${plainHttp ? 'http' : 'https'}://${ref.apiHost}`
  const registryName = ref.registry
  let authorization: string | undefined
  // Checked once, before the first request; a listed registry is the operator's word.
  let registryChecked: Promise<void> | undefined

  const refused = (status: number, anonymous: boolean, where: string): SandstormError => {
    if (anonymous) {
      return new SandstormError('unauthenticated', `registry ${registryName} requires credentials for ${ref.repository} (${where} answered ${status}): log in or pass them`)
    }
    return status === 403
      ? new SandstormError('permission_denied', `registry ${registryName} refused the credentials of ${credentials!.username} for ${ref.repository} (${where} answered 403: no access)`)
      : new SandstormError('unauthenticated', `registry ${registryName} refused the credentials of ${credentials!.username} for ${ref.repository} (${where} answered ${status})`)
  }

  /**
   * One fetch, its redirects followed here, each hop's host checked before it is reached
   * (fetch-targets.ts). As fetch's own following does: a hop to another origin goes without the
   * Authorization header, and none goes from https to http.
   */
  const fetchFollowing = async (url: string, init: { headers: Record<string, string> }, signal: AbortSignal | undefined): Promise<Response> => {
    let headers = init.headers
    for (let hops = 0; ; hops++) {
      const response = await fetch(url, { headers, signal, redirect: 'manual' })
      if (!redirectStatuses.has(response.status)) return response
      await response.body?.cancel().catch(() => {})
      const location = response.headers.get('location')
      if (!location || hops >= maxRedirects) throw new SandstormError('unavailable', `registry ${registryName}: ${new URL(url).host} answered ${response.status} ${location ? `past ${maxRedirects} redirects` : 'without a Location'}`)
      const next = new URL(location, url)
      if (next.protocol !== 'https:' && !(next.protocol === 'http:' && new URL(url).protocol === 'http:')) {
        throw new SandstormError('unavailable', `registry ${registryName}: ${new URL(url).host} redirected to ${next.protocol}//${next.host}: expected https`)
      }
      await checkFetchTarget(next, loopbackRegistry, `registry ${registryName}: a redirect to`)
      if (next.origin !== new URL(url).origin) headers = Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'authorization'))
      url = next.href
    }
  }

  // One fetch with retries of what is transient; returns the first response that is not.
  const fetchRetrying = async (url: string, init: { headers: Record<string, string> }, signal: AbortSignal | undefined): Promise<Response> => {
    for (let attempt = 1; ; attempt++) {
      let response: Response
      try {
        response = await fetchFollowing(url, init, signal)
      } catch (err) {
        if (err instanceof SandstormError) throw err
        throwIfAborted(signal)
        const code = networkCodeOf(err)
        if (attempt < attempts && !permanentNetworkCodes.has(code)) {
          await backoff(attempt, null)
          continue
        }
        const host = new URL(url).host
        throw new SandstormError('unavailable', `registry ${registryName}: could not reach ${host} (${code || 'connection failed'}${attempt > 1 ? ` after ${attempt} tries` : ''})`, { cause: err })
      }
      if (transientStatuses.has(response.status) && attempt < attempts) {
        await response.body?.cancel().catch(() => {})
        await backoff(attempt, response.headers.get('retry-after'))
        continue
      }
      return response
    }
    function backoff(attempt: number, retryAfter: string | null): Promise<void> {
      const asked = retryAfter !== null && /^\d+$/.test(retryAfter) ? Number(retryAfter) * 1000 : undefined
      const waitMs = Math.min(asked ?? backoffMs * 2 ** (attempt - 1), maxRetryAfterMs)
      return delay(waitMs, undefined, { signal }).catch(() => throwIfAborted(signal))
    }
  }

  // Answers a 401's challenge: a bearer token from the realm, or basic auth with the credentials.
  const authorize = async (challengeHeader: string | null, signal: AbortSignal | undefined): Promise<void> => {
    const challenge = parseAuthChallenge(challengeHeader)
    const basic = credentials ? `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}` : undefined
    if (challenge?.scheme === 'bearer' && challenge.params.realm) {
      let realm: URL
      try {
        realm = new URL(challenge.params.realm)
      } catch {
        throw new SandstormError('unavailable', `registry ${registryName}: expected a token realm URL in its challenge, got ${JSON.stringify(challenge.params.realm)}`)
      }
      // A registry reached over TLS gets its token over TLS too: the credentials go to the realm.
      if (realm.protocol !== 'https:' && !(plainHttp && realm.protocol === 'http:')) {
        throw new SandstormError('unavailable', `registry ${registryName}: expected an ${plainHttp ? 'http(s)' : 'https'} token realm, got ${realm.protocol}//${realm.host}`)
      }
      await checkFetchTarget(realm, loopbackRegistry, `registry ${registryName}: its token realm`)
      if (challenge.params.service) realm.searchParams.set('service', challenge.params.service)
      realm.searchParams.set('scope', challenge.params.scope ?? `repository:${ref.repository}:pull`)
      const response = await fetchRetrying(realm.href, { headers: basic ? { Authorization: basic } : {} }, signal)
      if (response.status === 401 || response.status === 403) {
        await response.body?.cancel().catch(() => {})
        throw refused(response.status, !credentials, `its token service ${realm.host}`)
      }
      if (!response.ok) {
        await response.body?.cancel().catch(() => {})
        throw new SandstormError('unavailable', `registry ${registryName}: its token service ${realm.host} answered ${response.status}`)
      }
      // A token is a few KiB; a realm that sends more is no token service.
      const text = await readLimited(response, maxTokenBytes, `the token of ${realm.host}`)
      const body = (() => {
        try {
          return JSON.parse(text.toString('utf8')) as { token?: unknown; access_token?: unknown }
        } catch {
          return {}
        }
      })()
      const token = typeof body.token === 'string' && body.token ? body.token : body.access_token
      if (typeof token !== 'string' || token === '') throw new SandstormError('unavailable', `registry ${registryName}: expected a token from ${realm.host}, got none`)
      authorization = `Bearer ${token}`
      return
    }
    if (challenge?.scheme === 'basic' || (!challenge && basic)) {
      if (!basic) throw refused(401, true, 'it')
      authorization = basic
      return
    }
    throw new SandstormError('unavailable', `registry ${registryName}: expected a Bearer or Basic challenge with its 401, got ${JSON.stringify(challengeHeader ?? '')}`)
  }

  return {
    base,
    async get(path, headers, signal) {
      if (!listed) await (registryChecked ??= checkRegistryTarget(new URL(base), registryName))
      let authorized = false
      for (;;) {
        const response = await fetchRetrying(`${base}${path}`, { headers: { ...headers, ...(authorization ? { Authorization: authorization } : {}) } }, signal)
        if (response.status !== 401 && response.status !== 403) return response
        await response.body?.cancel().catch(() => {})
        // Only the registry's own challenge is answered: a host a redirect led to (blob storage, a
        // CDN) could name any realm, and the credentials would go there.
        if (response.url !== '' && new URL(response.url).origin !== new URL(base).origin) {
          throw new SandstormError('unavailable', `registry ${registryName}: ${new URL(response.url).host}, where it redirected ${path}, answered ${response.status}`)
        }
        // A token from an earlier request may have expired or lack this scope: ask once more per request.
        if (response.status === 401 && !authorized) {
          authorized = true
          await authorize(response.headers.get('www-authenticate'), signal)
          continue
        }
        throw refused(response.status, !credentials, 'it')
      }
    },
  }
}

/** The errno-like code of a failed fetch (undici puts it on `cause`). */
function networkCodeOf(err: unknown): string {
  let e: unknown = err
  for (let depth = 0; depth < 4 && e; depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string') return code
    e = (e as { cause?: unknown }).cause
  }
  return ''
}
