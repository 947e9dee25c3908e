/**
 * A network slot: a network namespace with a routed veth to the host and one address of the
 * sandbox pool. The sandbox's end is `eth0` with the address as a /32 and the gateway as its
 * peer; the host's end (`sbv<slot>`) has no address of its own: a /32 route sends the address
 * there, from the gateway, which lives on the agent's `sandstorm0` device. No two sandboxes share
 * a link, so nothing of one reaches another below IP, where nftables decides.
 */
import { createHash, randomBytes } from 'node:crypto'
import { readdir, writeFile } from 'node:fs/promises'
import ipaddr from 'ipaddr.js'
import { complaintOf, runProcess, SandstormError } from '../shared/index.js'
import type { ResidentShell } from '../shared/resident-shell.js'

/** Where `ip netns` keeps its namespaces. */
export const netnsDir = '/run/netns'

/** The device on the host that holds every gateway address. */
export const gatewayDevice = 'sandstorm0'

/** One slot: its namespace, its host veth and its address. */
export interface NetworkSlot {
  /** Ten lowercase letters and digits; names the namespace, the veth and the nftables objects. */
  id: string
  /** Name under /run/netns: `sbn-<agent tag>-<id>`. */
  netns: string
  /** The host's end of the veth: `sbv<id>`. */
  hostIf: string
  /** The sandbox's address. */
  address: string
  /** The gateway the sandbox routes through (and asks for DNS). */
  gateway: string
}

const slotAlphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'

/** A fresh slot id. */
export function newSlotId(): string {
  let id = ''
  for (const b of randomBytes(10)) id += slotAlphabet[b % slotAlphabet.length]
  return id
}

/** The slot named `id` of the agent tagged `tag` (names only; nothing is made). */
export function slotNames(tag: string, id: string): Pick<NetworkSlot, 'id' | 'netns' | 'hostIf'> {
  return { id, netns: `sbn-${tag}-${id}`, hostIf: `sbv${id}` }
}

/** Runs `ip` with a batch of commands on stdin; `netns` runs them in that namespace. */
async function ipBatch(lines: string[], netns?: string): Promise<{ ok: boolean; stderr: string }> {
  const args = [...(netns ? ['-n', netns] : []), '-batch', '-']
  const r = await runProcess('ip', args, { input: `${lines.join('\n')}\n` })
  return { ok: r.exitCode === 0, stderr: r.exitCode === null ? complaintOf(r) : r.stderr.trim() }
}

/** The gateway of a pool: its first host address (198.18.0.1 in 198.18.0.0/16). */
export function gatewayOf(cidr: string): string {
  // Pools are /29 or larger, so the network address ends in a multiple of 8 and +1 stays in the byte.
  const bytes = ipaddr.IPv4.networkAddressFromCIDR(cidr).toByteArray()
  bytes[3]! += 1
  return bytes.join('.')
}

/** A random address of the pool other than its network, gateway and broadcast addresses. */
export function randomAddress(cidr: string): string {
  const [, bits] = ipaddr.IPv4.parseCIDR(cidr)
  const base = ipaddr.IPv4.networkAddressFromCIDR(cidr).toByteArray().reduce((n, b) => n * 256 + b, 0)
  const size = 2 ** (32 - bits)
  if (size < 8) throw new SandstormError('invalid_argument', `sandbox CIDR ${cidr}: expected a pool of at least 8 addresses (a /29 or larger)`)
  // Offsets 2 .. size-2: not the network (0), the gateway (1) or the broadcast address.
  const offset = 2 + (randomBytes(4).readUInt32BE(0) % (size - 3))
  const n = base + offset
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
}

/**
 * Makes sure the host forwards IPv4 and that `sandstorm0` holds the gateway address. Both are
 * host-wide and shared by every agent on the host; neither is undone when an agent stops.
 */
export async function prepareHost(gateway: string): Promise<void> {
  await writeFile('/proc/sys/net/ipv4/ip_forward', '1\n')
  const r = await ipBatch([`link add ${gatewayDevice} type bridge`], undefined)
  if (!r.ok && !/File exists/.test(r.stderr)) throw new SandstormError('internal', `could not make the gateway device ${gatewayDevice}: ${r.stderr}`)
  const a = await ipBatch([`addr add ${gateway}/32 dev ${gatewayDevice}`, `link set ${gatewayDevice} up`])
  if (!a.ok && !/File exists|Address already assigned/.test(a.stderr)) throw new SandstormError('internal', `could not put ${gateway} on ${gatewayDevice}: ${a.stderr}`)
  if (!a.ok) await ipBatch([`link set ${gatewayDevice} up`])
  // Nothing in a sandbox speaks IPv6: the gateway device offers none either.
  await writeFile(`/proc/sys/net/ipv6/conf/${gatewayDevice}/disable_ipv6`, '1\n').catch(() => undefined)
}

/**
 * Makes a slot with an address of `cidr` not taken on this host: the route of a taken address
 * exists already (another sandbox, another agent), so a refused route means pick again.
 */
export async function createSlot(shell: ResidentShell, tag: string, cidr: string, gateway: string, taken: (address: string) => boolean): Promise<NetworkSlot> {
  for (let attempt = 0; attempt < 16; attempt++) {
    const address = randomAddress(cidr)
    if (taken(address)) continue
    const slot: NetworkSlot = { ...slotNames(tag, newSlotId()), address, gateway }
    // One script for both ends, in the agent's resident shell (a spawn would fork the agent): the
    // host's end first, whose route is the claim on the address, then the namespace's.
    const host = [
      `netns add ${slot.netns}`,
      `link add ${slot.hostIf} type veth peer name eth0 netns ${slot.netns}`,
      `link set ${slot.hostIf} up`,
      `route add ${address}/32 dev ${slot.hostIf} src ${gateway}`,
    ]
    const inside = ['link set lo up', `addr add ${address} peer ${gateway} dev eth0`, 'link set eth0 up', `route add default via ${gateway} dev eth0`]
    const script = `ip -batch - <<'HOST' || exit 3\n${host.join('\n')}\nHOST\nip -n ${slot.netns} -batch - <<'INSIDE'\n${inside.join('\n')}\nINSIDE\n`
    const r = await shell.run(script)
    if (r.code !== 0) {
      await destroySlot(shell, slot)
      if (r.code === 3 && /File exists/.test(r.output)) continue
      throw new SandstormError('internal', `could not make a network namespace for a sandbox: ${r.output.trim().split('\n').pop()}`)
    }
    // No IPv6 on the host's end (the namespace's is turned off by the runtime: runc's sysctls, or a VM's own kernel).
    await writeFile(`/proc/sys/net/ipv6/conf/${slot.hostIf}/disable_ipv6`, '1\n').catch(() => undefined)
    return slot
  }
  throw new SandstormError('resource_exhausted', `no free address found in the sandbox pool ${cidr} after 16 tries: the pool is nearly full`)
}

/**
 * Removes a slot: its host end is set down, then its namespace deleted. Once nothing holds the
 * namespace (the sandbox's processes are gone), the kernel takes it down in a worker of its own,
 * and the veth with it (both ends, and so the route). A `link del` made each destroy wait for that
 * teardown's RCU grace periods: 17 to 59 ms on a 2-core host, against about 4 ms for these two,
 * and destroys in a burst queued behind each other on the kernel's network lock. Down, the veth
 * passes no packet while it lingers outside the firewall's sets (its rules go after it); the host
 * network deletes it after, unwaited (removeSlot), in case something holds the namespace. Until
 * it is gone the route of the address stays: a new slot that picks it is refused and picks
 * another (createSlot). Safe to call twice.
 */
export async function destroySlot(shell: ResidentShell, slot: Pick<NetworkSlot, 'netns' | 'hostIf'>): Promise<void> {
  // -force: go on past what is gone already.
  await shell.run(`ip -force -batch - <<'SLOT'\nlink set ${slot.hostIf} down\nnetns del ${slot.netns}\nSLOT\n`)
}

/** The address of a slot's `eth0`, read from its namespace; undefined if it has none (or no namespace). */
export async function slotAddress(shell: ResidentShell, slot: Pick<NetworkSlot, 'netns'>): Promise<string | undefined> {
  const r = await shell.run(`ip -n ${slot.netns} -4 -o addr show dev eth0 2>/dev/null`)
  return /\binet ([0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)\b/.exec(r.output)?.[1]
}

/** The tag that names the table and slots of the agent whose data dir is `dataDir`. */
export function networkTag(dataDir: string): string {
  return createHash('sha256').update(dataDir).digest('hex').slice(0, 6)
}

/** Slot ids of this agent's namespaces on the host (`sbn-<tag>-*`). */
export async function slotIdsOnHost(tag: string): Promise<string[]> {
  const prefix = `sbn-${tag}-`
  return (await readdir(netnsDir).catch(() => [] as string[])).filter((n) => n.startsWith(prefix)).map((n) => n.slice(prefix.length))
}
