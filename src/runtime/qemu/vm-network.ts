/**
 * A VM's network: a tap that QEMU opens on the host, then moved into the sandbox's own network
 * namespace (the agent's slot) and bridged there with the slot's veth, so that the guest holds the
 * slot's address and the host's rules for the sandbox apply to it as to a container. The tap is
 * made on the host because QEMU opens it by name in its own namespace; moved, it keeps working,
 * and it goes with the namespace when the sandbox is destroyed. A spare QEMU (made before any
 * sandbox) opens a tap of its own that a clone moves into its namespace when it takes the spare,
 * or, for a clone without a network, leaves down on the host until the VM goes (QEMU spins on a
 * tap deleted under it).
 */
import { randomBytes } from 'node:crypto'
import { basename } from 'node:path'
import { runOrThrow, runProcess } from '../../shared/index.js'

/** The tap of a VM whose id is `id` (a sandbox's or a spare's): at most 15 characters, as Linux wants. */
export function tapName(id: string): string {
  return `sbt${id.slice(-12)}`
}

/** A random locally administered unicast MAC address. */
export function randomMac(): string {
  const bytes = randomBytes(6)
  bytes[0] = (bytes[0]! & 0xfe) | 0x02
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':')
}

async function ipBatch(lines: string[], netns?: string): Promise<void> {
  await runOrThrow('ip', [...(netns ? ['-n', netns] : []), '-batch', '-'], "setting up the VM's network", { input: `${lines.join('\n')}\n` })
}

/** Makes a tap on the host for QEMU to open (it is moved once QEMU holds it). */
export async function createTap(tap: string): Promise<void> {
  // A leftover of the same name (a VM that died mid-start) is replaced.
  await runProcess('ip', ['link', 'del', tap])
  await ipBatch([`tuntap add ${tap} mode tap`])
}

/** Removes a tap still on the host; one that was moved went with its namespace. Safe to call twice. */
export async function removeTap(tap: string): Promise<void> {
  await runProcess('ip', ['link', 'del', tap])
}

/**
 * Moves the tap into the sandbox's namespace and bridges it with the slot's veth there, taking the
 * slot's address off the namespace: the guest holds it now.
 */
export async function plugTap(tap: string, netnsPath: string): Promise<void> {
  const netns = basename(netnsPath)
  await ipBatch([`link set ${tap} netns ${netns}`])
  await ipBatch(['addr flush dev eth0', 'route flush table main', 'link add br0 type bridge', 'link set eth0 master br0', `link set ${tap} master br0`, 'link set br0 up', `link set ${tap} up`], netns)
}
