/**
 * What a restored guest is given before anyone uses it: the host's clock, an identity of its own
 * (hostname, a reseeded RNG) and its own network address; and the one run of a spare's guest that
 * makes its clone's first command cost what later ones cost.
 */
import { randomBytes } from 'node:crypto'
import { isAlive, SandstormError } from '../../shared/index.js'
import { connectGuestAgent, type GuestAgent } from './guest-agent.js'
import { startGuestProcess } from './guest-process.js'
import { guestBusybox, guestIdentityPath, guestNetworkScript, hostEpoch, identityScript } from './guest-scripts.js'
import type { MachineConfig } from './machine-image.js'
import { vmFiles, type VmNic } from './qemu-args.js'
import { identityRecord } from './reseed-helper.js'
import type { Spare } from './spare-pool.js'
import { guestDefaultPath } from './vm-host.js'

/** A clone's guest agent answers within ~100 ms; a cold boot's within the boot timeout. */
export const cloneAgentTimeoutMs = 30_000
/** The command a spare runs to warm its guest's exec path (a `true`) is killed after this. */
const warmExecTimeoutMs = 10_000

/** Gives a freshly restored guest the host's clock and its own identity (hostname, a reseeded RNG), in one guest command. */
export async function freshen(agent: GuestAgent, hostname: string, helper: boolean): Promise<void> {
  if (helper) {
    // One exec of a static program, no shell: the record (time taken last) comes on its stdin.
    const r = await agent.run(guestIdentityPath, [], [], identityRecord(hostname, randomBytes(64), Date.now()))
    if (r.exitCode !== 0) throw new SandstormError('internal', `giving the clone its identity failed: the helper exited with ${r.exitCode} (an errno; 100: short record)`)
    return
  }
  const r = await agent.run(guestBusybox, ['sh', '-c', identityScript, 'sandstorm-identity', hostname, randomBytes(64).toString('hex'), hostEpoch()])
  if (r.exitCode !== 0) throw new SandstormError('internal', `giving the clone its identity failed: ${r.stderr.toString().trim()}`)
}

/** Gives a restored guest its own link address and IP (its memory holds its machine's), or takes its link down (`ip` null). */
export async function guestNetwork(agent: GuestAgent, mac: string, ip: { address: string; gateway: string } | null): Promise<void> {
  const args = ip ? [mac, ip.address, ip.gateway] : ['', '', '']
  const r = await agent.run(guestBusybox, ['sh', '-c', guestNetworkScript, 'sandstorm-network', ...args])
  if (r.exitCode !== 0) throw new SandstormError('internal', `giving the clone its network failed: ${r.stderr.toString().trim()}`)
}

/**
 * Runs a spare's restored guest once, then stops it again, so that its clone's create and first
 * command do not pay for the guest's first run. Under TCG each QEMU translates guest code the
 * first time it runs, so in a fresh QEMU the guest agent's first answer, the identity helper's
 * exec and the first command's wrapper, program and output files each cost several times what
 * they cost later (measured: 100-250 ms for the agent's first answer, ~350 ms for the identity
 * exec). Here the guest answers the agent, is given an identity of its own at once (a fresh seed
 * and CRNG reseed: what it draws from now on is its own; hostname and clock come again with its
 * clone's identity), takes its link down (a clone without a network needs nothing more), runs one
 * command through the exec wrapper as a user's command runs (output files, their reads, their
 * removal), and stops. It ran for about a second past its machine's save; nothing of it is left
 * running. The connected agent goes with the spare.
 */
export async function warmSpare(spare: Spare, config: MachineConfig, nic: VmNic | undefined): Promise<GuestAgent> {
  await spare.qmp.call('cont')
  const agent = await connectGuestAgent(vmFiles(spare.dir).qga, cloneAgentTimeoutMs, () => !isAlive(spare.pid))
  try {
    await freshen(agent, config.hostname, config.identityHelper === true)
    if (nic) await guestNetwork(agent, nic.mac, null)
    const silent = { onStdout: () => undefined, onStderr: () => undefined }
    // Its exit status does not matter (an image may lack `true`): the path to it is what warms. The
    // image's own `true` is run, so its loader and libc warm too; bounded, whatever the image has.
    // By its path: the wrapper's busybox `setsid` runs a bare `true` as its own applet, which left
    // the loader and libc cold, and a clone's first command about 20 ms slower than later ones.
    const warm = { argv: ['/bin/true'], env: {}, cwd: '/', uid: 0, gid: 0, timeoutMs: warmExecTimeoutMs }
    await (await startGuestProcess(agent, [`PATH=${guestDefaultPath}`], warm, silent)).result
    await spare.qmp.call('stop')
  } catch (err) {
    agent.close()
    throw err
  }
  return agent
}
