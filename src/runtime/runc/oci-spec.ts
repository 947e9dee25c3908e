import { readFileSync } from 'node:fs'
import type { SandboxSpec } from '../backend.js'
import { defaultCapabilities, processCapabilities } from './capabilities.js'
import { cgroupPath, hostHelpers, inSandbox } from './layout.js'

/** The abstract socket name the init of runtime instance `id` listens on for a restarted agent. */
export function initListenName(id: string): string {
  return `sandstorm-init-${id}`
}

/** The PATH every sandbox process starts with. */
export const defaultPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

const cpuPeriodUs = 100_000

/** Terminals a sandbox may hold open at once (its devpts instance's `max`), its own and the agent's. */
export const maxSandboxTerminals = 256

/**
 * Paths Docker hides from containers: they leak host details or allow attacks on the host kernel.
 * Beyond Docker's: the host's block devices, whose loop devices name every sandbox's disk image
 * (`<id>.disk`), and so every sandbox's id, which is all a neighbour needs to reach its public ports.
 */
const maskedPaths = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
  '/sys/block', '/sys/class/block', '/sys/dev/block', '/sys/devices/virtual/block',
]
const readonlyPaths = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']

/**
 * Open-file limits of every process: the soft one as a shell has it, the hard one as Docker's,
 * but never above the agent's own hard limit, which runc cannot raise.
 */
export const sandboxNofile = { soft: 1024, hard: Math.max(1024, Math.min(524288, ownHardNofile())) }
const rlimits = [{ type: 'RLIMIT_NOFILE', ...sandboxNofile }]

function ownHardNofile(): number {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))
  const hard = line?.trim().split(/\s+/)[4]
  return hard === undefined || hard === 'unlimited' ? 524288 : Number(hard)
}

function bindReadonly(source: string, destination: string) {
  return { destination, type: 'bind', source, options: ['rbind', 'ro', 'nosuid', 'nodev'] }
}

/**
 * The OCI runtime config of a sandbox. PID 1 is Sandstorm's init (native/sandbox-init.c): it loads
 * the sandbox's seccomp filter before anything else (so the config names none: runc would compile
 * it again on every start), drops the stdio runc hands over (stderr is a file on the host), reaps
 * orphans, and starts the agent's commands over fd 3. An idle sandbox is that one small process.
 */
export function buildOciSpec(spec: SandboxSpec, rootOverlayData: string): Record<string, unknown> {
  const memoryBytes = spec.memoryMiB * 1024 * 1024
  const net = spec.network
  const namespaces = ['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup'].map((type) =>
    // The agent made the namespace of a networked sandbox (its veth and address are there already).
    type === 'network' && net.mode === 'netns' ? { type, path: net.netnsPath } : { type },
  )
  const setuid = spec.rootfs.allowSetuid === true
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      // The init listens for a restarted agent on an abstract socket of this name (per instance:
      // a restored sandbox's new instance shares the old one's network namespace for a moment).
      args: [inSandbox.init, initListenName(spec.id), ...(setuid ? ['allow-setuid'] : [])],
      env: [`PATH=${defaultPath}`, 'HOME=/root', ...Object.entries(spec.env).map(([k, v]) => `${k}=${v}`)],
      cwd: '/',
      // Where setuid files may work (sudo), the seccomp filter must be loaded without no_new_privs,
      // which takes CAP_SYS_ADMIN: the init holds it only for that load and then drops it from
      // every set, bounding included, before anything of the sandbox runs (native/init-filter.c).
      // A setuid root program then gets what a root command gets: the default set, the same filter.
      capabilities: processCapabilities(setuid ? [...defaultCapabilities, 'CAP_SYS_ADMIN'] : defaultCapabilities),
      rlimits,
      noNewPrivileges: !setuid,
    },
    root: { path: 'rootfs', readonly: false },
    hostname: spec.hostname,
    mounts: [
      // The root: runc mounts the overlay in the sandbox's own mount namespace, over the empty
      // bundle rootfs, before anything else. It goes with the namespace, so nothing is mounted
      // on the host, and neither a mount nor an umount tool runs per sandbox. nosuid unless the
      // template's setuid files are meant to work: they raise no more than root in here has.
      { destination: '/', type: 'overlay', source: 'overlay', options: setuid ? ['nodev', rootOverlayData] : ['nodev', 'nosuid', rootOverlayData] },
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      // The host's ptys are one pool (kernel.pty.max) for every sandbox: each takes a bounded share.
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5', `max=${maxSandboxTerminals}`] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
      bindReadonly(hostHelpers.init, inSandbox.init),
      bindReadonly(hostHelpers.busybox, inSandbox.busybox),
      ...spec.rootfs.readonlyBinds.map((b) => bindReadonly(b.source, b.target)),
      ...(net.mode === 'netns' ? [bindReadonly(net.resolvConf, '/etc/resolv.conf')] : []),
    ],
    linux: {
      namespaces,
      // In the sandbox's own namespace: ping without CAP_NET_RAW (ICMP echo sockets for every
      // group), and no IPv6 at all (nothing routes it; as Docker does without an IPv6 network).
      sysctl: {
        'net.ipv4.ping_group_range': '0 2147483647',
        'net.ipv6.conf.all.disable_ipv6': '1',
        'net.ipv6.conf.default.disable_ipv6': '1',
      },
      cgroupsPath: cgroupPath(spec.id),
      resources: {
        devices: [{ allow: false, access: 'rwm' }],
        memory: { limit: memoryBytes, swap: memoryBytes },
        cpu: { quota: Math.round(spec.cpus * cpuPeriodUs), period: cpuPeriodUs },
        pids: { limit: spec.pidsMax },
      },
      maskedPaths,
      readonlyPaths,
    },
  }
}
