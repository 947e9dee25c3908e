/** Network flags: a sandbox's (create, run, network) and a host's (up, server, agent). */
import type { Command } from 'commander'
import { InvalidArgumentError, type SandboxNetworkOptions } from '@sandstorm/sdk'
import { checkEgress, checkMaskRequestHost, SandstormError, toCidr, type DefaultEgress } from '../shared/index.js'
import { parsePositiveInt } from './cli-context.js'
import { collect } from './key-value.js'
import { parseDuration } from './duration.js'

/** Raw values of a sandbox's network flags. */
export interface SandboxNetworkFlags {
  network?: string
  allowOut?: string[]
  denyOut?: string[]
  /** false with --no-internet. */
  internet?: boolean
  private?: boolean
  maskHost?: string
}

/** Adds `--allow-out --deny-out --no-internet` (the egress policy) to a command. */
export function addEgressFlags(cmd: Command): Command {
  return cmd
    .option('--allow-out <entry>', 'always reachable: an IPv4 address, CIDR, domain or *.domain (repeatable; domains need --deny-out 0.0.0.0/0)', collect)
    .option('--deny-out <cidr>', 'refused unless --allow-out names it: an IPv4 address or CIDR, 0.0.0.0/0 for all (repeatable)', collect)
    .option('--no-internet', 'refuse all egress but what --allow-out names (--deny-out 0.0.0.0/0)')
}

/** Adds the network flags of a new sandbox. */
export function addSandboxNetworkFlags(cmd: Command): Command {
  return addEgressFlags(cmd.option('--network <mode>', '"none" for only lo (no egress, no ports); default: a network under the policy flags'))
    .option('--private', "its ports answer only requests with its traffic token or an API key")
    .option('--mask-host <host[:port]>', 'the Host header its ports see (${PORT} stands for the port)')
}

/** Turns a CLI error of the shared checks into the CLI's (exit 2). */
function asUsage<T>(check: () => T): T {
  try {
    return check()
  } catch (err) {
    if (err instanceof SandstormError) throw new InvalidArgumentError('invalid_argument', err.message.replace(/^allowOut/, '--allow-out').replace(/^denyOut/, '--deny-out'))
    throw err
  }
}

/** The egress policy of the flags, checked here so that a bad one exits 2 before any request; undefined when none was given. */
export function egressOf(flags: SandboxNetworkFlags): { allowOut: string[]; denyOut: string[]; allowInternetAccess?: boolean } | undefined {
  const given = flags.allowOut !== undefined || flags.denyOut !== undefined || flags.internet === false
  if (!given) return undefined
  const policy = { allowOut: flags.allowOut ?? [], denyOut: flags.denyOut ?? [], ...(flags.internet === false ? { allowInternetAccess: false } : {}) }
  asUsage(() => checkEgress(policy))
  return policy
}

/** The `network` of a create for the flags, or undefined for the server's default. */
export function sandboxNetworkOf(flags: SandboxNetworkFlags): 'none' | SandboxNetworkOptions | undefined {
  if (flags.network !== undefined) {
    if (flags.network !== 'none') throw new InvalidArgumentError('invalid_argument', `--network: expected "none", got "${flags.network}" (leave it out for a network under the policy flags)`)
    const others = [flags.allowOut, flags.denyOut, flags.private, flags.maskHost].some((f) => f !== undefined) || flags.internet === false
    if (others) throw new InvalidArgumentError('invalid_argument', '--network none: expected no other network flag (a sandbox without a network has no policy and no ports)')
    return 'none'
  }
  const egress = egressOf(flags)
  const out: SandboxNetworkOptions = { ...(egress ?? {}) }
  if (flags.private) out.allowPublicTraffic = false
  if (flags.maskHost !== undefined) out.maskRequestHost = asUsage(() => checkMaskRequestHost(flags.maskHost!, '--mask-host'))
  return Object.keys(out).length > 0 ? out : undefined
}

/** Raw values of a host's network flags. */
export interface HostNetworkFlags {
  sandboxCidr?: string
  publicCidr?: string[]
  dnsUpstream?: string[]
  sandboxConnections?: string
}

/** Adds `--sandbox-cidr --public-cidr --dns-upstream` (an agent's) to a command. */
export function addHostNetworkFlags(cmd: Command): Command {
  return cmd
    .option('--sandbox-cidr <cidr>', 'addresses of sandboxes on this host (default 198.18.0.0/16)')
    .option('--public-cidr <cidr>', 'a range sandboxes may reach as if public, e.g. an internal mirror (repeatable)', collect)
    .option('--dns-upstream <ip[:port]>', "resolver the sandboxes' resolver asks (repeatable; default: the host's /etc/resolv.conf)", collect)
    .option('--sandbox-connections <n>', 'connections one sandbox may have open at once (TCP, UDP flows, DNS queries); more are refused (default 4096)')
}

/** The agent's network options for the flags, checked. */
export function hostNetworkOf(flags: HostNetworkFlags): { sandboxCidr?: string; publicCidrs?: string[]; dnsUpstreams?: string[]; connectionsPerSandbox?: number } {
  const cidr = (value: string, flag: string): string => {
    const normal = toCidr(value)
    if (!normal) throw new InvalidArgumentError('invalid_argument', `${flag}: expected an IPv4 CIDR such as 10.1.0.0/16, got "${value}"`)
    return normal
  }
  for (const up of flags.dnsUpstream ?? []) {
    if (!/^[0-9.]+(?::[0-9]{1,5})?$/.test(up) || !toCidr(up.split(':')[0]!)) throw new InvalidArgumentError('invalid_argument', `--dns-upstream: expected an IPv4 address with an optional :port, got "${up}"`)
  }
  return {
    ...(flags.sandboxCidr !== undefined ? { sandboxCidr: cidr(flags.sandboxCidr, '--sandbox-cidr') } : {}),
    ...(flags.publicCidr ? { publicCidrs: flags.publicCidr.map((c) => cidr(c, '--public-cidr')) } : {}),
    ...(flags.dnsUpstream ? { dnsUpstreams: flags.dnsUpstream } : {}),
    ...(flags.sandboxConnections !== undefined ? { connectionsPerSandbox: parsePositiveInt(flags.sandboxConnections, '--sandbox-connections') } : {}),
  }
}

/** Raw values of a server's network flags. */
export interface ServerNetworkFlags {
  defaultEgress: string
  domain?: string
  ingressIdleTimeout?: string
}

/** Adds `--default-egress --domain` (a server's) to a command. */
export function addServerNetworkFlags(cmd: Command): Command {
  return cmd
    .option('--default-egress <all|none>', 'egress of a sandbox whose create names no policy, and of Dockerfile RUN steps: the public internet, or nothing', 'all')
    .option('--domain <domain>', 'sandbox ports answer at <port>-<id>.<domain>; its DNS must point here (default localhost:<port>)')
    .option('--ingress-idle-timeout <duration>', "a request to a sandbox's port, or a WebSocket to one, that carries nothing either way this long is ended (default 10m)")
}

/** The server's network options for the flags, checked. */
export function serverNetworkOf(flags: ServerNetworkFlags): { defaultEgress: DefaultEgress; domain?: string; ingressIdleMs?: number } {
  if (flags.defaultEgress !== 'all' && flags.defaultEgress !== 'none') {
    throw new InvalidArgumentError('invalid_argument', `--default-egress: expected all or none, got "${flags.defaultEgress}"`)
  }
  if (flags.domain !== undefined && !/^[a-z0-9.-]+(?::[0-9]{1,5})?$/i.test(flags.domain)) {
    throw new InvalidArgumentError('invalid_argument', `--domain: expected a domain such as sandbox.example.com (with an optional :port), got "${flags.domain}"`)
  }
  return {
    defaultEgress: flags.defaultEgress,
    ...(flags.domain !== undefined ? { domain: flags.domain } : {}),
    ...(flags.ingressIdleTimeout !== undefined ? { ingressIdleMs: parseDuration(flags.ingressIdleTimeout, '--ingress-idle-timeout') } : {}),
  }
}
