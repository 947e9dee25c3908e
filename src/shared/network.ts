/**
 * A sandbox's network checked at the edge (its wire shapes are in `@sandstorm/sdk/wire`), and
 * what an agent gets of it; the agent turns a checked policy into nftables rules.
 */
import ipaddr from 'ipaddr.js'
import type { z } from 'zod'
import { maxPolicyEntries, type EgressPolicy, type networkBody, type SandboxNetwork } from '@sandstorm/sdk/wire'
import { SandstormError } from './errors.js'

/** A sandbox's network as an agent makes it: ingress settings stay with the server. */
export type AgentNetwork = { mode: 'none' } | { mode: 'veth'; egress: EgressPolicy }

/** What an agent needs of a sandbox's network. */
export function agentNetworkOf(network: SandboxNetwork): AgentNetwork {
  return network === 'none' ? { mode: 'none' } : { mode: 'veth', egress: { allowOut: network.allowOut, denyOut: network.denyOut } }
}

/** The server's policy when a create names none: everything public, or nothing. */
export type DefaultEgress = 'all' | 'none'

/** The egress policy the server's default stands for: `none` is deny-all, as `allowInternetAccess: false`. */
export function defaultEgressPolicy(defaultEgress: DefaultEgress): EgressPolicy {
  return checkEgress({ allowInternetAccess: defaultEgress === 'all' })
}

const domainLabel = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/

/** Is `name` a domain such as `example.com`, or with `wildcard` also `*.example.com`? */
export function isDomain(name: string, wildcard = true): boolean {
  const bare = wildcard && name.startsWith('*.') ? name.slice(2) : name
  if (bare.length === 0 || bare.length > 253) return false
  const labels = bare.split('.')
  // A name of digits and dots only is an address gone wrong, not a domain.
  if (labels.every((l) => /^[0-9]+$/.test(l))) return false
  return labels.every((l) => domainLabel.test(l))
}

/** An IPv4 address or CIDR as `a.b.c.d/n` (the network address), or undefined. */
export function toCidr(entry: string): string | undefined {
  if (ipaddr.IPv4.isValidFourPartDecimal(entry)) return `${entry}/32`
  const slash = entry.indexOf('/')
  if (slash < 0 || !ipaddr.IPv4.isValidFourPartDecimal(entry.slice(0, slash))) return undefined
  if (!/^(?:[0-9]|[12][0-9]|3[0-2])$/.test(entry.slice(slash + 1))) return undefined
  const [addr, bits] = ipaddr.IPv4.parseCIDR(entry)
  return `${ipaddr.IPv4.networkAddressFromCIDR(`${addr.toString()}/${bits}`).toString()}/${bits}`
}

const cidrExpected = 'an IPv4 address or CIDR such as 10.0.0.0/8'

function checkList(field: string, entries: string[], allowDomains: boolean): string[] {
  if (entries.length > maxPolicyEntries) {
    throw new SandstormError('invalid_argument', `${field}: expected at most ${maxPolicyEntries} entries, got ${entries.length}`)
  }
  return entries.map((raw, i) => {
    const entry = raw.trim().toLowerCase()
    const cidr = toCidr(entry)
    if (cidr) return cidr
    if (entry.includes(':') && ipaddr.isValid(entry.split('/')[0]!)) {
      throw new SandstormError('invalid_argument', `${field}[${i}]: expected ${cidrExpected} (sandboxes have no IPv6 route), got ${JSON.stringify(raw)}`)
    }
    if (allowDomains && isDomain(entry)) return entry
    if (!allowDomains && isDomain(entry)) {
      throw new SandstormError('invalid_argument', `${field}[${i}]: expected ${cidrExpected} (domains go in allowOut, with 0.0.0.0/0 in denyOut), got ${JSON.stringify(raw)}`)
    }
    const expected = allowDomains ? `${cidrExpected}, or a domain such as example.com or *.example.com` : cidrExpected
    throw new SandstormError('invalid_argument', `${field}[${i}]: expected ${expected}, got ${JSON.stringify(raw)}`)
  })
}

/**
 * Checks and normalizes an egress policy. `prefix` names the fields in messages (`network.`).
 * `allowInternetAccess: false` adds `0.0.0.0/0` to denyOut.
 */
export function checkEgress(input: { allowOut?: string[]; denyOut?: string[]; allowInternetAccess?: boolean }, prefix = ''): EgressPolicy {
  const allowOut = [...new Set(checkList(`${prefix}allowOut`, input.allowOut ?? [], true))]
  const denyOut = [...new Set(checkList(`${prefix}denyOut`, input.denyOut ?? [], false))]
  if (input.allowInternetAccess === false && !denyOut.includes('0.0.0.0/0')) denyOut.push('0.0.0.0/0')
  const domains = allowOut.filter((e) => !toCidr(e))
  if (domains.length > 0 && !denyOut.includes('0.0.0.0/0')) {
    throw new SandstormError(
      'invalid_argument',
      `${prefix}allowOut: domain entries (${domains.slice(0, 3).join(', ')}) need ${prefix}denyOut to contain 0.0.0.0/0 (an allowlist), got denyOut ${JSON.stringify(input.denyOut ?? [])}`,
    )
  }
  return { allowOut, denyOut }
}

/** Checks a `maskRequestHost`: `host[:port]`, where the port may be `${PORT}`. */
export function checkMaskRequestHost(value: string, field = 'maskRequestHost'): string {
  const match = /^([a-z0-9.-]{1,253}|\[[0-9a-f:.]+\])(?::([0-9]{1,5}|\$\{PORT\}))?$/i.exec(value)
  const port = match?.[2]
  if (!match || (port !== undefined && port !== '${PORT}' && Number(port) > 65535)) {
    throw new SandstormError('invalid_argument', `${field}: expected host[:port] (the port may be \${PORT}), got ${JSON.stringify(value)}`)
  }
  return value
}

/** The network of a create body, checked, with the server's default egress where the body gives none. */
export function checkNetwork(body: z.output<typeof networkBody> | undefined, defaultEgress: DefaultEgress): SandboxNetwork {
  if (body === 'none') return 'none'
  const given = body ?? {}
  const egressGiven = given.allowOut !== undefined || given.denyOut !== undefined || given.allowInternetAccess !== undefined
  const egress = egressGiven ? checkEgress(given, 'network.') : defaultEgressPolicy(defaultEgress)
  const maskRequestHost = given.maskRequestHost === undefined ? undefined : checkMaskRequestHost(given.maskRequestHost, 'network.maskRequestHost')
  return { ...egress, allowPublicTraffic: given.allowPublicTraffic ?? true, ...(maskRequestHost ? { maskRequestHost } : {}) }
}

/** A port number of a sandbox (1-65535), or a 400 naming `field`. */
export function checkPort(value: string | number, field = 'port'): number {
  const port = typeof value === 'number' ? value : /^[0-9]{1,5}$/.test(value) ? Number(value) : NaN
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new SandstormError('invalid_argument', `${field}: expected a port from 1 to 65535, got ${JSON.stringify(value)}`)
  }
  return port
}
