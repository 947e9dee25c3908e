/**
 * The network of one agent's sandboxes on its host: a slot (namespace, veth, address) per
 * sandbox, the nftables table that holds their policies, the resolver and the name checks they
 * use, and connections into them for ingress. Runtimes only join the namespace it hands out.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { SandstormError, silentLogger, toCidr, type CallOptions, type EgressPolicy, type Logger } from '../shared/index.js'
import { addressClassifier, cidrMatcher } from './address-ranges.js'
import { createFirewall, hasDomains, type FirewalledSandbox } from './firewall.js'
import { startNameChecks, type NameCheckClient } from './name-checks.js'
import { createNft } from './nft.js'
import { createPinSet, type PinSet } from './pins.js'
import { createResidentShell } from '../shared/resident-shell.js'
import { whenQuiet } from '../shared/when-quiet.js'
import { startResolver, type ResolverClient } from './resolver.js'
import { createSlot, destroySlot, gatewayOf, netnsDir, networkTag, prepareHost, slotAddress, slotIdsOnHost, slotNames, type NetworkSlot } from './slots.js'

/** Options of createHostNetwork. */
export interface HostNetworkOptions {
  /** The agent's data dir: names its table and slots. */
  dataDir: string
  /** Addresses of sandboxes. @default '198.18.0.0/16' */
  sandboxCidr?: string
  /** Ranges a sandbox may reach as if public (an internal mirror, a test network). @default [] */
  publicCidrs?: string[]
  /** Resolvers the sandboxes' resolver asks. @default the host's (/etc/resolv.conf) */
  dnsUpstreams?: string[]
  /** Slots made ahead, so that a create does not wait for one: as many as a fork of 8 takes. @default 8 */
  spareSlots?: number
  /** Connections (tracked flows: TCP, UDP, DNS queries) one sandbox may have open at once; more are refused. @default 4096 */
  connectionsPerSandbox?: number
  /** Tracked connections all sandboxes may have at once; the host keeps the rest of its table. @default three quarters of nf_conntrack_max */
  connectionsOfAllSandboxes?: number
  /** TCP connections one sandbox may have open to the agent at once (DNS over TCP, the HTTP and TLS name checks). @default 256 */
  agentConnectionsPerSandbox?: number
  /** Addresses one sandbox may have pinned at once (answers for allowed names); answers past that get SERVFAIL. @default 4096 */
  pinsPerSandbox?: number
  logger?: Logger
}

/** What the agent records of a sandbox's network: enough to adopt it after a restart. */
export interface SandboxNetworkRecord {
  slot: NetworkSlot
  egress: EgressPolicy
}

/** The agent's network. */
export interface HostNetwork {
  /** The default sandbox pool and the gateway. */
  readonly sandboxCidr: string
  readonly gateway: string
  /** A file to bind-mount as a sandbox's /etc/resolv.conf: the gateway's resolver. */
  readonly resolvConf: string
  /** Gives sandbox `id` a slot under `egress`, rules in place before it returns. */
  attach(id: string, egress: EgressPolicy): Promise<SandboxNetworkRecord>
  /**
   * Gives sandbox `id` a slot under `egress` at once, its rules written behind: `ruled` settles
   * when they are in (rejected, the slot is gone again). Until then the slot's link passes
   * everything, so nothing but the runtime's own start (runc and the init, none of the
   * sandbox's code) may run in its namespace before `ruled` resolves; a runc start overlaps the
   * rules' transaction this way (about 10 ms on a 2-core host).
   */
  claim(id: string, egress: EgressPolicy): Promise<{ record: SandboxNetworkRecord; ruled: Promise<void> }>
  /** Replaces a sandbox's egress policy in one transaction. */
  update(id: string, egress: EgressPolicy): Promise<void>
  /** Removes a sandbox's rules and slot. Safe to call twice. */
  detach(id: string): Promise<void>
  /** At start: takes over the slots of sandboxes that still run, and removes every other slot of this agent. */
  adopt(sandboxes: Map<string, SandboxNetworkRecord>): Promise<void>
  /** The path of a slot's namespace, for the runtime to join. */
  netnsPath(slot: NetworkSlot): string
  /** A TCP connection from the host to a port of the sandbox. */
  connect(id: string, port: number, options?: CallOptions): Promise<Socket>
  /** Whether the sandbox has a network here. */
  has(id: string): boolean
  /**
   * Makes spare slots up to the target, in the background, once creates pause (100 ms without
   * one, 500 ms at the longest). Called once a create is done, not when it takes its slot: making
   * one takes the kernel's rtnl lock and milliseconds of CPU, which on a small host slowed the
   * very create that took the spare (its runc run), and then its answer and first command
   * (2 ms p50 and 7 ms p95 of a create over HTTP, when made at once after it).
   */
  replenish(): void
  /** Stops the resolver, the checks and the spare slots; sandboxes and their rules stay (with none left, the table goes too). */
  close(): Promise<void>
}

interface Attached extends SandboxNetworkRecord {
  id: string
  allowsName: ((name: string) => boolean) | null
  allowedCidr: (address: string) => boolean
}

/** Where the sandboxes' resolv.conf files are (one per gateway, the same for every sandbox behind it). */
const resolvConfDir = '/run/sandstorm'

/** The default pool of sandbox addresses. */
export const defaultSandboxCidr = '198.18.0.0/16'

/** Does a domain entry allow `name`? `*.x` allows names under x, not x itself. */
function nameMatcher(egress: EgressPolicy): ((name: string) => boolean) | null {
  const domains = egress.allowOut.filter((e) => !toCidr(e))
  // Under deny-all with no domain allowed (no internet, or addresses only): no name either, or
  // the resolver would carry queries, and data in their names, to whoever serves a zone, and
  // answers of any type back: a tunnel past the policy.
  if (domains.length === 0 && egress.denyOut.includes('0.0.0.0/0')) return () => false
  if (domains.length === 0) return null
  const exact = new Set(domains.filter((d) => !d.startsWith('*.')))
  const suffixes = domains.filter((d) => d.startsWith('*.')).map((d) => d.slice(1))
  return (name) => exact.has(name) || suffixes.some((s) => name.endsWith(s) && name.length > s.length)
}

/** Checks a pool CIDR: IPv4, /29 or larger. */
export function checkSandboxCidr(cidr: string): string {
  const normal = toCidr(cidr)
  const bits = normal ? Number(normal.split('/')[1]) : NaN
  if (!normal || !cidr.includes('/') || bits > 29 || bits < 8) {
    throw new SandstormError('invalid_argument', `sandbox CIDR: expected an IPv4 CIDR from /8 to /29 such as 198.18.0.0/16, got ${JSON.stringify(cidr)}`)
  }
  return normal
}

/** Starts the agent's resolver and name checks; the firewall is written by `adopt`. */
export async function createHostNetwork(options: HostNetworkOptions): Promise<HostNetwork> {
  const log = (options.logger ?? silentLogger()).child({ component: 'network' })
  const sandboxCidr = checkSandboxCidr(options.sandboxCidr ?? defaultSandboxCidr)
  const publicCidrs = (options.publicCidrs ?? []).map((c) => {
    const normal = toCidr(c)
    if (!normal) throw new SandstormError('invalid_argument', `public CIDR: expected an IPv4 address or CIDR, got ${JSON.stringify(c)}`)
    return normal
  })
  const gateway = gatewayOf(sandboxCidr)
  const tag = networkTag(options.dataDir)
  const classify = addressClassifier({ sandboxCidr, publicCidrs })
  const inPool = cidrMatcher([sandboxCidr])
  await prepareHost(gateway)

  // Outside the data dir, as the helpers are: a sandbox's mounts name no path of Sandstorm's state.
  mkdirSync(resolvConfDir, { recursive: true, mode: 0o755 })
  const resolvConf = join(resolvConfDir, `resolv.conf.${gateway}`)
  writeFileSync(resolvConf, `nameserver ${gateway}\noptions edns0\n`, { mode: 0o644 })

  const byId = new Map<string, Attached>()
  const byAddress = new Map<string, Attached>()
  const nft = createNft(log)
  const shell = createResidentShell('network')
  // Checked once: without it, a removed sandbox's connections outlive it, and the next sandbox at
  // its address takes them over (see forgetConnections). That is no network to run sandboxes on.
  if ((await shell.run('command -v conntrack >/dev/null')).code !== 0) {
    shell.close()
    throw new SandstormError('failed_precondition', "sandbox networking needs the conntrack tool, to end a removed sandbox's connections before its address is another's: install Debian's conntrack package (scripts/setup.sh does)")
  }
  // The size of the host's conntrack table, which the kernel sets as the module loads (from the
  // host's memory): loaded first, as the firewall's first ct rule would; its smallest default if unreadable.
  const conntrackMax = Number((await shell.run('modprobe nf_conntrack 2>/dev/null; cat /proc/sys/net/netfilter/nf_conntrack_max 2>/dev/null')).output.trim()) || 65536
  // The veths of removed slots, deleted behind the destroys that removed them (see removeSlot).
  const teardown = createResidentShell('network teardown')
  const behindDetaches = new Set<Promise<unknown>>()
  /**
   * Removes a slot at the speed of destroySlot (its veth set down, its namespace deleted), then
   * deletes the veth in a shell of its own, not waited for: the kernel has usually taken it down
   * with the namespace by then, and where something still holds the namespace (a process a crash
   * left in it), the veth goes anyway instead of lingering with it.
   */
  const removeSlot = async (slot: Pick<NetworkSlot, 'netns' | 'hostIf'>): Promise<void> => {
    await destroySlot(shell, slot)
    const deletion: Promise<unknown> = teardown
      .run(`ip link del ${slot.hostIf} 2>/dev/null`)
      .catch(() => undefined)
      .finally(() => behindDetaches.delete(deletion))
    behindDetaches.add(deletion)
  }
  /**
   * Deletes the tracked connections of a removed sandbox's address, behind the detach, and only
   * then lets a new slot take the address. Left alone, a connection kept its NAT mapping for as
   * long as conntrack keeps it (days, for TCP): a peer's packets on it went to the next sandbox
   * given the address, and that sandbox's packets on the same ports went to the peer.
   */
  const forgetConnections = (address: string): void => {
    const deletion: Promise<unknown> = teardown
      .run(`conntrack -D -s ${address} >/dev/null 2>&1; conntrack -D -d ${address} >/dev/null 2>&1; true`)
      .catch(() => undefined)
      .finally(() => {
        forgetting.delete(address)
        behindDetaches.delete(deletion)
      })
    behindDetaches.add(deletion)
  }
  let firewallReady: Promise<void> | undefined
  /**
   * The host's own IPv4 addresses: interfaces come and go, so read again once they are a few
   * seconds old (a read lists every link, each sandbox's veth included: not once per answer).
   */
  let hostAddressesRead = { at: 0, addresses: new Set<string>() }
  const hostAddresses = (): Set<string> => {
    if (Date.now() - hostAddressesRead.at > 5_000) {
      const addresses = new Set(Object.values(networkInterfaces()).flatMap((list) => (list ?? []).filter((i) => i.family === 'IPv4').map((i) => i.address)))
      hostAddressesRead = { at: Date.now(), addresses }
    }
    return hostAddressesRead.addresses
  }

  const resolverClient = (a: Attached): ResolverClient => ({
    allowsName: a.allowsName,
    // An answer may name any address: the never ranges and the host's own addresses are neither
    // pinned nor dialled by the name checks, which connect from the host (no sandbox rule applies).
    pinnable: (address) => {
      const kind = classify(address)
      return kind !== 'never' && (kind === 'public' || a.allowedCidr(address)) && !hostAddresses().has(address)
    },
    // Dropped if the sandbox's policy is replaced (or it is gone) before the pins are written.
    pin: async (addresses) => pinSets.get(a.id)?.pin(addresses, () => byId.get(a.id) === a),
  })
  const resolver = await startResolver({
    host: gateway,
    upstreams: options.dnsUpstreams,
    clientOf: (address) => {
      const a = byAddress.get(address)
      return a && resolverClient(a)
    },
    logger: log,
  })
  const checks = await startNameChecks({
    host: gateway,
    clientOf: (address): NameCheckClient | undefined => {
      const a = byAddress.get(address)
      if (!a?.allowsName) return undefined
      const allowsName = a.allowsName
      const client = resolverClient(a)
      return {
        allowsName,
        async addressesOf(name) {
          const found = (await resolver.lookup(name)).filter((r) => client.pinnable(r.address))
          await client.pin(found.map((r) => ({ address: r.address, ttlS: Math.max(600, r.ttlS) })))
          return found.map((r) => r.address)
        },
      }
    },
    logger: log,
  })
  const firewall = createFirewall(nft, {
    tag,
    gateway,
    plan: { sandboxCidr, publicCidrs },
    ports: { dnsUdp: resolver.udpPort, dnsTcp: resolver.tcpPort, http: checks.httpPort, tls: checks.tlsPort },
    connectionsPerSandbox: options.connectionsPerSandbox ?? 4096,
    agentConnectionsPerSandbox: options.agentConnectionsPerSandbox ?? 256,
    connectionsOfAllSandboxes: options.connectionsOfAllSandboxes ?? Math.floor(conntrackMax * 0.75),
  })
  const pinSets = new Map<string, PinSet>()
  const pinsPerSandbox = options.pinsPerSandbox ?? 4096

  const remember = (id: string, record: SandboxNetworkRecord): Attached => {
    const allowedCidr = cidrMatcher(record.egress.allowOut.filter((e) => toCidr(e)))
    const a: Attached = { id, ...record, allowsName: nameMatcher(record.egress), allowedCidr }
    byId.set(id, a)
    byAddress.set(record.slot.address, a)
    if (!pinSets.has(id)) pinSets.set(id, createPinSet({ write: (pins) => firewall.pin(record.slot, pins), max: pinsPerSandbox }))
    return a
  }
  const forget = (a: Attached): void => {
    byId.delete(a.id)
    pinSets.delete(a.id)
    if (byAddress.get(a.slot.address) === a) byAddress.delete(a.slot.address)
  }
  /** Addresses of detached sandboxes whose tracked connections are still being forgotten. */
  const forgetting = new Set<string>()
  const taken = (address: string): boolean => byAddress.has(address) || forgetting.has(address) || address === gateway || !inPool(address)
  const rules = (): FirewalledSandbox[] => [...byId.values()].map(({ slot, egress }) => ({ slot, egress }))

  // Slots made ahead: a create takes one instead of waiting for `ip` (about 10 ms).
  const spareTarget = options.spareSlots ?? 8
  const spares: NetworkSlot[] = []
  let filling: Promise<void> | undefined
  let closed = false
  const spareAddresses = new Set<string>()
  const fill = (): void => {
    if (filling || closed || spares.length >= spareTarget) return
    filling = (async () => {
      while (!closed && spares.length < spareTarget) {
        const slot = await createSlot(shell, tag, sandboxCidr, gateway, (a) => taken(a) || spareAddresses.has(a))
        if (closed) {
          await removeSlot(slot)
          break
        }
        spares.push(slot)
        spareAddresses.add(slot.address)
      }
    })()
      .catch((err: unknown) => log.error({ err }, 'could not make a spare network slot'))
      .finally(() => {
        filling = undefined
      })
  }
  const refillWhenQuiet = whenQuiet(fill, 100, 500)
  const takeSlot = async (): Promise<NetworkSlot> => {
    const spare = spares.shift()
    if (spare) {
      spareAddresses.delete(spare.address)
      return spare
    }
    return createSlot(shell, tag, sandboxCidr, gateway, (a) => taken(a) || spareAddresses.has(a))
  }

  const get = (id: string): Attached => {
    const a = byId.get(id)
    if (!a) throw new SandstormError('failed_precondition', `sandbox "${id}" has no network: it was created with network "none"`)
    return a
  }

  /**
   * Removes a detached sandbox's slot, then its rules (a table that lost track, after a failed
   * remove, is rewritten whole from what is known). In that order: a link out of the firewall's
   * sets is no longer filtered, so it must be down first (a process that outlived its sandbox's
   * kill would otherwise reach the host unfiltered in between).
   */
  const removeRulesAndSlot = async (a: Attached): Promise<void> => {
    await removeSlot(a.slot)
    await firewall.remove(a).catch(async (err: unknown) => {
      log.warn({ sandboxId: a.id, err }, 'removing a sandbox\'s rules failed; rewriting the table')
      await rewriteTable()
    })
  }

  /** Writes the table again whole from what is known, after a change it refused. */
  const rewriteTable = async (): Promise<void> => {
    await firewall.reset(rules())
    // The rewrite emptied every sandbox's pins: each set forgets them in its turn, so the next answers pin again.
    for (const pins of pinSets.values()) void pins.replace(async () => undefined)
  }

  /** Ends the connections a sandbox holds to the resolver and the name checks (their upstream halves with them). */
  const closeConnectionsFrom = (address: string): void => {
    resolver.closeFrom(address)
    checks.closeFrom(address)
  }

  const network: HostNetwork = {
    sandboxCidr,
    gateway,
    resolvConf,
    async attach(id, egress) {
      const { record, ruled } = await network.claim(id, egress)
      await ruled
      return record
    },
    async claim(id, egress) {
      if (byId.has(id)) throw new SandstormError('already_exists', `sandbox "${id}" has a network already`)
      await (firewallReady ??= firewall.reset(rules()))
      const slot = await takeSlot()
      const record = { slot, egress }
      const a = remember(id, record)
      const ruled = firewall.add(record).then(
        () => log.debug({ sandboxId: id, address: slot.address, slot: slot.id }, 'sandbox network attached'),
        async (err: unknown) => {
          forget(a)
          await removeSlot(slot)
          // A refused transaction changed nothing, but one refused for a table not as the agent
          // left it (changed or deleted under it) leaves every sandbox's rules in doubt: the table
          // is written again whole from what is known, as after a failed remove.
          await rewriteTable().catch((e: unknown) => log.error({ err: e }, 'could not rewrite the sandboxes\' table after a refused change'))
          throw err
        },
      )
      // Handled by the caller; never an unhandled rejection in the meantime.
      ruled.catch(() => undefined)
      return { record, ruled }
    },
    async update(id, egress) {
      const a = get(id)
      // In the sandbox's turn with its pins: none checked under the old policy lands after this.
      await pinSets.get(id)!.replace(async () => {
        await firewall.update({ slot: a.slot, egress })
        if (byId.has(id)) remember(id, { slot: a.slot, egress })
      })
      // The firewall ends forwarded connections; those the checks let through end here.
      closeConnectionsFrom(a.slot.address)
      log.info({ sandboxId: id, allowOut: egress.allowOut.length, denyOut: egress.denyOut.length, domains: hasDomains(egress) }, 'sandbox network policy replaced')
    },
    async detach(id) {
      const a = byId.get(id)
      if (!a) return
      forgetting.add(a.slot.address)
      forget(a)
      // Before the address can be another sandbox's: nothing of this one may be answered to it.
      closeConnectionsFrom(a.slot.address)
      try {
        await removeRulesAndSlot(a)
      } finally {
        // Also when the removal failed: the address is not held for good.
        forgetConnections(a.slot.address)
      }
      log.debug({ sandboxId: id, slot: a.slot.id }, 'sandbox network detached')
    },
    async adopt(sandboxes) {
      for (const [id, record] of sandboxes) remember(id, record)
      firewallReady = firewall.reset(rules())
      await firewallReady
      const live = new Set([...sandboxes.values()].map((r) => r.slot.id))
      for (const slotId of await slotIdsOnHost(tag)) {
        if (live.has(slotId)) continue
        const slot = slotNames(tag, slotId)
        // Its connections are forgotten too: the sandbox that had it is gone (a crash, a stop on its own).
        const address = await slotAddress(shell, slot)
        if (address) forgetting.add(address)
        try {
          await removeSlot(slot)
        } finally {
          if (address) forgetConnections(address)
        }
        log.info({ slot: slotId, address }, 'removed a network slot that no sandbox holds')
      }
      fill()
    },
    netnsPath: (slot) => join(netnsDir, slot.netns),
    async connect(id, port, call = {}) {
      const a = byId.get(id)
      if (!a) throw new SandstormError('failed_precondition', `sandbox "${id}" has no network: it was created with network "none", so none of its ports can be reached`)
      return new Promise<Socket>((resolve, reject) => {
        // Half-open allowed: an end from the client is passed on, and the sandbox's answer still comes back.
        const socket = connect({ host: a.slot.address, port, noDelay: true, allowHalfOpen: true })
        const cancel = (): void => void socket.destroy(new SandstormError('canceled', 'the connect was canceled'))
        call.signal?.addEventListener('abort', cancel, { once: true })
        const settle = (): void => call.signal?.removeEventListener('abort', cancel)
        const failed = (err: NodeJS.ErrnoException): void => {
          settle()
          if (err instanceof SandstormError) return reject(err)
          const refused = err.code === 'ECONNREFUSED'
          reject(new SandstormError(refused ? 'unavailable' : 'internal', refused ? `nothing listens on port ${port} in sandbox "${id}"` : `could not connect to port ${port} in sandbox "${id}"`, { cause: err }))
        }
        socket.once('error', failed)
        socket.once('connect', () => {
          settle()
          socket.removeListener('error', failed)
          resolve(socket)
        })
      })
    },
    has: (id) => byId.has(id),
    replenish: () => refillWhenQuiet.poke(),
    async close() {
      closed = true
      refillWhenQuiet.cancel()
      await filling
      for (const slot of spares.splice(0)) await removeSlot(slot)
      await Promise.all([resolver.close(), checks.close()])
      // Rules stay for sandboxes that run on (the next start adopts them); with none, nothing is left.
      if (byId.size === 0) await firewall.drop().catch((err: unknown) => log.warn({ err }, 'could not remove the nftables table'))
      nft.close()
      shell.close()
      while (behindDetaches.size > 0) await Promise.all([...behindDetaches])
      teardown.close()
    },
  }
  return network
}
