/**
 * Which IPv4 destinations a sandbox may reach, by class. One list each, used both for the
 * nftables sets and for the addresses the resolver pins, so the two never disagree.
 */
import ipaddr from 'ipaddr.js'

/** Never reachable from a sandbox, whatever its policy: this host's loopback, link-local (cloud metadata), multicast, broadcast and the reserved rest. */
export const neverRanges = ['0.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/4', '240.0.0.0/4'] as const

/**
 * Not on the public internet: reachable only when a sandbox's allowOut names them (or the
 * operator counts them as public with --public-cidr). RFC 1918, CGNAT, the IETF and
 * documentation blocks, 6to4 relays and the benchmarking block (198.18.0.0/15).
 */
export const privateRanges = [
  '10.0.0.0/8',
  '100.64.0.0/10',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.0.2.0/24',
  '192.88.99.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '198.51.100.0/24',
  '203.0.113.0/24',
] as const

/** Where an address stands for a sandbox. */
export type AddressClass = 'never' | 'private' | 'public'

/** The CIDR lists of one host's sandboxes: their own pool (never reachable) and the operator's public ranges. */
export interface AddressPlan {
  sandboxCidr: string
  publicCidrs: readonly string[]
}

/** A matcher of an IPv4 address against a list of CIDRs. */
export function cidrMatcher(cidrs: readonly string[]): (address: string) => boolean {
  const parsed = cidrs.map((c) => ipaddr.IPv4.parseCIDR(c))
  return (address) => {
    if (!ipaddr.IPv4.isValidFourPartDecimal(address)) return false
    const a = ipaddr.IPv4.parse(address)
    return parsed.some((range) => a.match(range))
  }
}

/** Classifies addresses as nftables does for the plan: never, then the operator's public ranges, then private. */
export function addressClassifier(plan: AddressPlan): (address: string) => AddressClass {
  const never = cidrMatcher([...neverRanges, plan.sandboxCidr])
  const extraPublic = cidrMatcher(plan.publicCidrs)
  const notPublic = cidrMatcher(privateRanges)
  return (address) => {
    if (never(address)) return 'never'
    if (extraPublic(address)) return 'public'
    return notPublic(address) ? 'private' : 'public'
  }
}
