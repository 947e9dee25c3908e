/**
 * Where the server may be sent on a registry's word. A pull is an HTTP client running as root on
 * the server's host: a registry's redirect (a blob's storage) or its token realm names the next
 * URL, and a hostile registry could name the host's own services (loopback) or a cloud's metadata
 * service (link-local). Those are refused before any connection: link-local always, loopback
 * unless the registry itself is on loopback (a local registry, whose redirects stay there).
 * Private ranges stay open: registries and their storage inside a company network are common.
 */
import { lookup } from 'node:dns/promises'
import ipaddr from 'ipaddr.js'
import { SandstormError } from '../../shared/index.js'

const refusedRanges = new Set(['linkLocal', 'unspecified', 'broadcast', 'multicast'])

/** Why `address` may not be reached, or undefined when it may. */
function refusal(address: string, allowLoopback: boolean): string | undefined {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6
  try {
    parsed = ipaddr.process(address)
  } catch {
    return `${address} is no address`
  }
  const range = parsed.range()
  if (refusedRanges.has(range)) return `${address} is ${range}`
  if (range === 'loopback' && !allowLoopback) return `${address} is loopback`
  return undefined
}

/**
 * Throws unless every address `url`'s host resolves to may be reached; `what` names the URL's
 * role for the error (a redirect, a token realm). Resolved here, and again by the fetch: a name
 * whose answers change between the two (rebinding) is not caught, and needs a host firewall.
 */
export async function checkFetchTarget(url: URL, allowLoopback: boolean, what: string): Promise<void> {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  const addresses = ipaddr.isValid(host) ? [host] : (await lookup(host, { all: true }).catch(() => [])).map((a) => a.address)
  for (const address of addresses) {
    const why = refusal(address, allowLoopback)
    if (why) throw new SandstormError('permission_denied', `${what} ${url.protocol}//${url.host}: refused, ${why}: a registry may not send the server to its own host or to link-local addresses`)
  }
}
