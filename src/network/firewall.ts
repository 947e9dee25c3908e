/**
 * The agent's nftables table: what its sandboxes may send, written as one transaction per create,
 * update and destroy. The table acts on this agent's sandbox links only (the `own` set), so agents
 * that share a host leave each other's traffic alone.
 *
 *   prerouting (raw)  from a sandbox: IPv6 dropped, a source other than the sandbox's own dropped
 *   prerouting (nat)  DNS to the gateway goes to the agent's resolver; under a domain policy,
 *                     TCP 80 and 443 go to the agent's HTTP and TLS checks (per-sandbox chain n_<slot>)
 *   input             to the host from a sandbox: only replies, and what was steered to the agent
 *   forward           into a sandbox: only replies; out of one: the sandbox's chain e_<slot>
 *   (input, forward)  a new connection past the sandbox's count of tracked ones is refused, so
 *                     that no sandbox can fill the host's connection tracking table; so is a TCP
 *                     connection to the agent past a smaller count (the agent's descriptors)
 *   postrouting (nat) out of the host: masqueraded
 *
 * A sandbox's chain: never-reachable ranges refused, then allowOut (CIDRs, then the addresses its
 * resolver pinned for allowed domains) accepted, denyOut refused, the operator's public ranges
 * accepted, private ranges refused, the rest (the public internet) accepted. Refused is an ICMP
 * "administratively prohibited" back to the sandbox, so that a client fails at once instead of
 * waiting out a timeout; forged and IPv6 packets are dropped without a word.
 */
import { toCidr, type EgressPolicy } from '../shared/index.js'
import { neverRanges, privateRanges, type AddressPlan } from './address-ranges.js'
import type { Nft } from './nft.js'
import type { NetworkSlot } from './slots.js'

/** The agent's own ports on the gateway that traffic is steered to. */
export interface SteerPorts {
  dnsUdp: number
  dnsTcp: number
  http: number
  tls: number
}

/** Options of createFirewall. */
export interface FirewallOptions {
  /** Names the table: `sandstorm_<tag>`. */
  tag: string
  gateway: string
  plan: AddressPlan
  ports: SteerPorts
  /** Tracked connections one sandbox may have at once (what it opens out and to the agent); new ones past that are refused. */
  connectionsPerSandbox: number
  /**
   * TCP connections one sandbox may have open to the agent itself (DNS over TCP, the HTTP and TLS
   * name checks) at once: each holds the agent's file descriptors (two, once it is passed on).
   */
  agentConnectionsPerSandbox: number
  /**
   * Tracked connections all of this agent's sandboxes may have at once. The host's conntrack
   * table is one for everything: full, the kernel drops every new connection of the host (ssh,
   * the server's API), and the per-sandbox counts of a few dozen sandboxes add up past it.
   */
  connectionsOfAllSandboxes: number
}

/** A sandbox as the firewall knows it. */
export interface FirewalledSandbox {
  slot: NetworkSlot
  egress: EgressPolicy
}

/** The table, changed one transaction at a time. */
export interface Firewall {
  readonly table: string
  /** Replaces the whole table with one holding exactly `sandboxes` (at start, after adoption, and to repair). */
  reset(sandboxes: Iterable<FirewalledSandbox>): Promise<void>
  add(sandbox: FirewalledSandbox): Promise<void>
  /** Replaces a sandbox's policy; the addresses pinned under the old one are dropped with it. */
  update(sandbox: FirewalledSandbox): Promise<void>
  remove(sandbox: FirewalledSandbox): Promise<void>
  /** Lets a sandbox reach these addresses (answers of its resolver for allowed names) for `ttlS` seconds each. */
  pin(slot: NetworkSlot, addresses: { address: string; ttlS: number }[]): Promise<void>
  /** Removes the whole table (the agent's last sandbox is gone and it stops for good). */
  drop(): Promise<void>
}

const set = (items: readonly string[]): string => `{ ${items.join(', ')} }`

/** What a refused packet gets: an ICMP error back, so the sandbox's client fails at once. */
const refuse = 'reject with icmpx type admin-prohibited'

/** Does this policy name domains (and so need the resolver's pins and the HTTP/TLS checks)? */
export const hasDomains = (egress: EgressPolicy): boolean => egress.allowOut.some((e) => !toCidr(e))

/** Builds and applies the table's rulesets. */
export function createFirewall(nft: Nft, options: FirewallOptions): Firewall {
  const table = `sandstorm_${options.tag}`
  const t = `inet ${table}`
  const g = options.gateway
  const { ports, plan } = options

  // One count per sandbox link, shared by what it sends through the host and to the agent.
  // The key of @allconns is the same for every packet (IPv4, the only family let in): one count for all.
  const limit = [
    `ct state new add @conns { iifname ct count over ${options.connectionsPerSandbox} } ${refuse}`,
    `ct state new add @allconns { meta nfproto ct count over ${options.connectionsOfAllSandboxes} } ${refuse}`,
  ].join('\n    ')
  const base = (): string => `
table ${t} {
  set own { type ifname; }
  set sources { type ifname . ipv4_addr; }
  map egress { type ifname : verdict; }
  map steer { type ifname : verdict; }
  set conns { type ifname; size 65535; flags dynamic; }
  set allconns { type nf_proto; size 1; flags dynamic; }
  set agentconns { type ifname; size 65535; flags dynamic; }
  set never { type ipv4_addr; flags interval; elements = ${set([...neverRanges, plan.sandboxCidr])}; }
  set private { type ipv4_addr; flags interval; elements = ${set(privateRanges)}; }
  set public { type ipv4_addr; flags interval; ${plan.publicCidrs.length > 0 ? `elements = ${set(plan.publicCidrs)};` : ''} }
  chain pre {
    type filter hook prerouting priority raw; policy accept;
    iifname @own meta nfproto ipv6 drop
    iifname @own iifname . ip saddr != @sources drop
  }
  chain prenat {
    type nat hook prerouting priority dstnat; policy accept;
    iifname @own ip daddr ${g} udp dport 53 dnat ip to ${g}:${ports.dnsUdp}
    iifname @own ip daddr ${g} tcp dport 53 dnat ip to ${g}:${ports.dnsTcp}
    iifname @own iifname vmap @steer
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname != @own return
    ct state established,related accept
    ${limit}
    ct status dnat ip daddr ${g} udp dport ${ports.dnsUdp} accept
    ct state new ip protocol tcp add @agentconns { iifname ct count over ${options.agentConnectionsPerSandbox} } ${refuse}
    ct status dnat ip daddr ${g} tcp dport ${set([ports.dnsTcp, ports.http, ports.tls].map(String))} accept
    ${refuse}
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    oifname @own ct state established,related accept
    oifname @own drop
    iifname @own ${limit}
    iifname @own iifname vmap @egress
    iifname @own ${refuse}
  }
  chain postnat {
    type nat hook postrouting priority srcnat; policy accept;
    iifname @own oifname != @own masquerade
  }
}
`

  const e = (slot: NetworkSlot) => `e_${slot.id}`
  const n = (slot: NetworkSlot) => `n_${slot.id}`
  const p = (slot: NetworkSlot) => `p_${slot.id}`

  /** The rules of a sandbox's two chains. */
  const rulesOf = ({ slot, egress }: FirewalledSandbox): string[] => {
    const allow = egress.allowOut.filter((x) => toCidr(x))
    const domains = hasDomains(egress)
    const lines = [`add rule ${t} ${e(slot)} ip daddr @never ${refuse}`]
    if (allow.length > 0) lines.push(`add rule ${t} ${e(slot)} ip daddr ${set(allow)} accept`)
    // TCP only: a datagram (QUIC on 443) would carry any server name past the checks to a shared address.
    if (domains) lines.push(`add rule ${t} ${e(slot)} ip daddr @${p(slot)} meta l4proto tcp accept`)
    if (egress.denyOut.length > 0) lines.push(`add rule ${t} ${e(slot)} ip daddr ${set(egress.denyOut)} ${refuse}`)
    lines.push(`add rule ${t} ${e(slot)} ip daddr @public accept`, `add rule ${t} ${e(slot)} ip daddr @private ${refuse}`, `add rule ${t} ${e(slot)} accept`)
    if (domains) {
      // A name is checked where a request names it: HTTP's Host, TLS's server name. Addresses the
      // policy allows by CIDR are not names, and go their way.
      if (allow.length > 0) lines.push(`add rule ${t} ${n(slot)} ip daddr ${set(allow)} return`)
      lines.push(`add rule ${t} ${n(slot)} tcp dport 80 dnat ip to ${g}:${ports.http}`, `add rule ${t} ${n(slot)} tcp dport 443 dnat ip to ${g}:${ports.tls}`)
    }
    return lines
  }

  const addLines = (s: FirewalledSandbox): string[] => {
    const { slot } = s
    return [
      `add chain ${t} ${e(slot)}`,
      `add chain ${t} ${n(slot)}`,
      `add set ${t} ${p(slot)} { type ipv4_addr; flags timeout; }`,
      ...rulesOf(s),
      `add element ${t} own { "${slot.hostIf}" }`,
      `add element ${t} sources { "${slot.hostIf}" . ${slot.address} }`,
      `add element ${t} egress { "${slot.hostIf}" : jump ${e(slot)} }`,
      `add element ${t} steer { "${slot.hostIf}" : jump ${n(slot)} }`,
    ]
  }

  /**
   * ARP is below the inet table: a VM's guest (root, with its own network card) can send ARP from
   * any sender address, and the host keeps a neighbour entry for each, on a table every link
   * shares (about 1,024 entries, none evictable for 5 s): a flood of made-up senders left the host
   * unable to reach new neighbours, other sandboxes and its own LAN among them. Only a link's own
   * address is taken from it.
   */
  const a = `arp ${table}`
  const arpBase = (): string => `
table ${a} {
  set own { type ifname; }
  set sources { type ifname . ipv4_addr; }
  chain in {
    type filter hook input priority filter; policy accept;
    iifname @own iifname . arp saddr ip != @sources drop
  }
}
`
  const arpAddLines = ({ slot }: FirewalledSandbox): string[] => [
    `add element ${a} own { "${slot.hostIf}" }`,
    `add element ${a} sources { "${slot.hostIf}" . ${slot.address} }`,
  ]

  const apply = (lines: string[]): Promise<string> => nft.apply(`${lines.join('\n')}\n`)

  const firewall: Firewall = {
    table,
    async reset(sandboxes) {
      // Made (if missing) and deleted in the same transaction as its new contents: one change.
      const all = [...sandboxes]
      await apply([`add table ${t}`, `delete table ${t}`, `add table ${a}`, `delete table ${a}`, base(), arpBase(), ...all.flatMap(addLines), ...all.flatMap(arpAddLines)])
    },
    add: async (s) => void (await apply([...addLines(s), ...arpAddLines(s)])),
    async update(s) {
      const { slot } = s
      await apply([`flush chain ${t} ${e(slot)}`, `flush chain ${t} ${n(slot)}`, `flush set ${t} ${p(slot)}`, ...rulesOf(s)])
    },
    async remove({ slot }) {
      await apply([
        `delete element ${t} steer { "${slot.hostIf}" }`,
        `delete element ${t} egress { "${slot.hostIf}" }`,
        `delete element ${t} sources { "${slot.hostIf}" . ${slot.address} }`,
        `delete element ${t} own { "${slot.hostIf}" }`,
        `delete element ${a} sources { "${slot.hostIf}" . ${slot.address} }`,
        `delete element ${a} own { "${slot.hostIf}" }`,
        `flush chain ${t} ${e(slot)}`,
        `delete chain ${t} ${e(slot)}`,
        `flush chain ${t} ${n(slot)}`,
        `delete chain ${t} ${n(slot)}`,
        `delete set ${t} ${p(slot)}`,
      ])
    },
    async pin(slot, addresses) {
      if (addresses.length === 0) return
      // add, delete, add: the element exists afterwards with the new timeout, whether or not it did before.
      const elements = set(addresses.map((a) => `${a.address} timeout ${Math.max(1, Math.round(a.ttlS))}s`))
      const bare = set(addresses.map((a) => a.address))
      await apply([`add element ${t} ${p(slot)} ${elements}`, `delete element ${t} ${p(slot)} ${bare}`, `add element ${t} ${p(slot)} ${elements}`])
    },
    drop: async () => void (await apply([`add table ${t}`, `delete table ${t}`, `add table ${a}`, `delete table ${a}`])),
  }
  return firewall
}
