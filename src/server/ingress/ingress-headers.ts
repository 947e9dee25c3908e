/**
 * What ingress passes on of a request's and an answer's headers, and what it never does: hop-by-hop
 * lines, the server's own tokens, API keys, a client's claims of where it came from, and answers
 * that act on the whole site.
 */
import type { IncomingMessage } from 'node:http'
import { ptyKeyProtocolPrefix, SandstormError } from '../../shared/index.js'
import { bearerToken, isKeyShaped } from '../api-keys.js'
import type { IngressTarget } from './ingress-target.js'

/** The header a private sandbox's traffic token comes in (E2B's name). */
export const trafficTokenHeader = 'e2b-traffic-access-token'

/** Headers that belong to one hop, never passed on. */
const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade'])
/**
 * Headers for the server alone, never sent into a sandbox: the traffic token, and envd's access
 * token (envd is the server's, never a sandbox port; E2B's code interpreter SDK sends it to every
 * port). Code in the sandbox that held it could act through envd as any user, root too.
 */
const serverOnly = new Set([trafficTokenHeader, 'x-access-token'])
/**
 * Answer headers a sandbox's server may not send on: Clear-Site-Data clears cookies and storage of
 * the whole site (the registrable domain), and every sandbox's ports are hosts of one site, so one
 * sandbox's app would clear every other's (and the console's, where it shares the domain).
 */
const siteWide = new Set(['clear-site-data'])

/** What the access check found: the Host to send, whether to wake the sandbox, and where the request carries an API key. */
export interface Admitted {
  maskHost: string | undefined
  wake: boolean
  /** Indexes in rawHeaders of the header lines that hold a valid API key: never sent into the sandbox. */
  keyAt: ReadonlySet<number>
}

/**
 * Whether a request header claims where the request came from (X-Forwarded-*, Forwarded, X-Real-IP):
 * the client's own are dropped, and the server sets X-Forwarded-* from what it saw. An app reads the
 * first value (or the only one it expects), which would be whatever the client chose.
 */
const claimsOrigin = (lower: string): boolean => lower.startsWith('x-forwarded-') || lower === 'forwarded' || lower === 'x-real-ip'

/** Header lines with an API key's shape one request may carry: each is hashed and looked up, and no client needs more. */
const maxKeyLines = 4

/**
 * The header lines of a request that have an API key's shape (Authorization: Bearer, X-API-Key), by
 * index in rawHeaders. Every line is looked at: Node's parsed headers keep the first Authorization
 * only, and join repeated X-API-Key lines, while all of them would be passed on. More than
 * maxKeyLines is refused, naming the header.
 */
export function keyLinesOf(req: IncomingMessage): { at: number; key: string }[] {
  const lines: { at: number; key: string; name: string }[] = []
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const lower = req.rawHeaders[i]!.toLowerCase()
    const value = req.rawHeaders[i + 1]!
    const key = lower === 'authorization' ? bearerToken(value) : lower === 'x-api-key' ? value : undefined
    if (key !== undefined && isKeyShaped(key)) lines.push({ at: i, key, name: lower === 'authorization' ? 'Authorization' : 'X-API-Key' })
  }
  if (lines.length > maxKeyLines) {
    const names = [...new Set(lines.map((l) => l.name))].join(' and ')
    throw new SandstormError('invalid_argument', `${names}: expected at most ${maxKeyLines} header lines that carry an API key, got ${lines.length}`)
  }
  return lines
}

/** The request's headers for the sandbox, as raw pairs (case and order kept). */
export function forwardHeaders(req: IncomingMessage, { maskHost, keyAt }: Admitted, keepUpgrade: boolean): string[] {
  const out: string[] = []
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!
    const lower = name.toLowerCase()
    if (hopByHop.has(lower) && !(keepUpgrade && (lower === 'connection' || lower === 'upgrade'))) continue
    if (serverOnly.has(lower) || keyAt.has(i) || claimsOrigin(lower)) continue
    if (lower === 'host' && maskHost !== undefined) continue
    if (lower === 'sec-websocket-protocol') {
      // The terminal's way to send a key from a browser: never the sandbox's business either.
      const offered = req.rawHeaders[i + 1]!.split(',').map((p) => p.trim()).filter((p) => p !== '' && !p.startsWith(ptyKeyProtocolPrefix))
      if (offered.length > 0) out.push(name, offered.join(', '))
      continue
    }
    out.push(name, req.rawHeaders[i + 1]!)
  }
  if (maskHost !== undefined) out.push('Host', maskHost)
  const forwardedFor = req.socket.remoteAddress ?? ''
  out.push('X-Forwarded-For', forwardedFor, 'X-Forwarded-Proto', 'http', 'X-Forwarded-Host', req.headers.host ?? '')
  return out
}

/**
 * The upstream response's headers for the client: no hop-by-hop ones, none that acts on the whole
 * site, and no cookie for a wider domain than the sandbox port's own host (every sandbox's host is
 * under one domain, so a cookie for it would reach every other sandbox, and the server if it is
 * there). An answer to a request
 * routed by E2B's headers is never stored by a cache: such a request may name the server's own
 * host, and a cache keyed on host and path would give the sandbox's answer for the server's.
 */
export function backHeaders(raw: string[], target: IngressTarget): string[] {
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase()
    if (hopByHop.has(lower) || serverOnly.has(lower) || siteWide.has(lower)) continue
    if (target.by === 'headers' && (lower === 'cache-control' || lower === 'expires')) continue
    out.push(raw[i]!, lower === 'set-cookie' ? raw[i + 1]!.replace(/;\s*domain\s*=[^;]*/gi, '') : raw[i + 1]!)
  }
  if (target.by === 'headers') out.push('Cache-Control', 'no-store', 'Vary', 'E2b-Sandbox-Id, E2b-Sandbox-Port')
  return out
}
