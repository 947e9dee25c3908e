/**
 * The Linux capabilities a sandbox's processes keep: Docker's default set, so that what works in
 * `docker run` works here, and nothing that reaches past the sandbox (no CAP_SYS_ADMIN,
 * CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE, ...), less CAP_NET_RAW: raw and packet sockets
 * would let a sandbox forge packets on its link (ping works without it, through
 * net.ipv4.ping_group_range).
 */
import { SandstormError } from '../../shared/index.js'

/** The OCI `process.capabilities` object of a runtime spec. */
export interface OciProcessCapabilities {
  bounding: string[]
  effective: string[]
  permitted: string[]
  inheritable: string[]
  ambient: string[]
}

/** Docker's default capability set without CAP_NET_RAW, as OCI names. */
export const defaultCapabilities: readonly string[] = Object.freeze([
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
])

// Every capability Linux defines (up to CAP_CHECKPOINT_RESTORE, 5.9). A name outside it is a typo
// that would otherwise be dropped in silence, leaving a sandbox without a power it was meant to have.
const knownCapabilities: ReadonlySet<string> = new Set([
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
])

/** Throws `invalid_argument` unless every name is a Linux capability in OCI form (`CAP_CHOWN`). */
export function assertCapabilityNames(caps: readonly string[]): void {
  const unknown = caps.filter((cap) => !knownCapabilities.has(cap))
  if (unknown.length > 0) {
    throw new SandstormError(
      'invalid_argument',
      `expected Linux capability names such as CAP_CHOWN, got ${unknown.map((c) => JSON.stringify(c)).join(', ')}`,
    )
  }
}

/**
 * The OCI `process.capabilities` for a sandbox process holding `caps`. Inheritable and ambient stay
 * empty so that a program run by a non-root user gains nothing across execve (the fix Docker made
 * for CVE-2022-24769).
 */
export function processCapabilities(caps: readonly string[] = defaultCapabilities): OciProcessCapabilities {
  assertCapabilityNames(caps)
  const unique = [...new Set(caps)]
  // Fresh arrays each time: callers patch the spec they build, and must not patch each other's.
  return {
    bounding: [...unique],
    effective: [...unique],
    permitted: [...unique],
    inheritable: [],
    ambient: [],
  }
}
