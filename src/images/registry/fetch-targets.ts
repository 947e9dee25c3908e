/**
 * Where a pull may send the server. A pull is an HTTP client running as root on the server's
 * host, sent by whoever names an image (a Dockerfile's FROM) to its registry, and by the registry
 * on to the URLs it names (a blob's storage, its token realm): either could name the host's own
 * services (loopback) or a cloud's metadata service (link-local, or one of the few metadata
 * addresses elsewhere). Those are refused before any connection: a registry there only when the
 * operator listed it as an insecure registry, and a redirect or realm to loopback only from such a
 * registry on loopback itself (a local registry, whose redirects stay there). Private ranges stay
 * open: registries and their storage inside a company network are common.
 */
import { lookup } from 'node:dns/promises'
import ipaddr from 'ipaddr.js'
import { SandstormError } from '../../shared/index.js'

const refusedRanges = new Set(['linkLocal', 'unspecified', 'broadcast', 'multicast'])
/** Cloud metadata services outside link-local: Alibaba Cloud's, and AWS's over IPv6. */
const metadataAddresses = new Set(['100.100.100.200', 'fd00:ec2::254'].map((a) => ipaddr.parse(a).toNormalizedString()))

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
  if (metadataAddresses.has(parsed.toNormalizedString())) return `${address} is a cloud metadata service`
  if (range === 'loopback' && !allowLoopback) return `${address} is loopback`
  return undefined
}

/** Why `url`'s host may not be reached (the first address it resolves to that may not), or undefined when it may. */
async function refusalOf(url: URL, allowLoopback: boolean): Promise<string | undefined> {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  const addresses = ipaddr.isValid(host) ? [host] : (await lookup(host, { all: true }).catch(() => [])).map((a) => a.address)
  for (const address of addresses) {
    const why = refusal(address, allowLoopback)
    if (why) return why
  }
  return undefined
}

/**
 * Throws unless every address `url`'s host resolves to may be reached; `what` names the URL's
 * role for the error (a redirect, a token realm). Resolved here, and again by the fetch: a name
 * whose answers change between the two (rebinding) is not caught, and needs a host firewall.
 */
export async function checkFetchTarget(url: URL, allowLoopback: boolean, what: string): Promise<void> {
  const why = await refusalOf(url, allowLoopback)
  if (why) throw new SandstormError('permission_denied', `${what} ${url.protocol}//${url.host}: refused, ${why}: a registry may not send the server to its own host or to a cloud's metadata service`)
}

/**
 * Throws unless the registry at `base` (`registry` as the reference names it) may be pulled from:
 * not on this host's own addresses nor a metadata service. A registry the operator listed as
 * insecure is not checked (the caller skips it): that is how a local registry is allowed.
 */
export async function checkRegistryTarget(base: URL, registry: string): Promise<void> {
  const why = await refusalOf(base, false)
  if (why) {
    throw new SandstormError(
      'permission_denied',
      `registry ${registry}: refused, ${why}: expected a registry that is not on this host nor a cloud's metadata service, or one the operator lists with sandstorm up --insecure-registry ${registry}`,
    )
  }
}
