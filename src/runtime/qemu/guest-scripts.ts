/**
 * Shell scripts that run inside the guest: the initramfs's /init, the guest root's init, and
 * the exec wrapper. They run under the static busybox copied into both.
 */

/** Kernel modules the initramfs loads, in dependency order (Debian builds virtio as modules). */
export const initramfsModules = [
  'virtio_ring',
  'virtio',
  'virtio_mmio',
  'virtio_blk',
  'failover',
  'net_failover',
  'virtio_net',
  'crc32c_generic',
  'crc16',
  'mbcache',
  'jbd2',
  'ext4',
  'virtio_console',
  'virtio-rng',
] as const

/** Where Sandstorm's own helpers live in the guest root. */
export const guestDir = '/.sandstorm'
/** The static busybox in the guest root. */
export const guestBusybox = `${guestDir}/busybox`
/** The host's guest agent and setpriv with their libraries and loader (guest-agent-bundle.ts): nothing of the image runs them. */
export const guestBundleDir = `${guestDir}/ga`

/**
 * The command line that runs `program` of the bundle through the bundle's own loader: the
 * libraries come from the bundle (and are not inherited by what the program execs, as
 * LD_LIBRARY_PATH would be), whatever libc the image has, or none.
 */
export function bundledCommand(program: string): string {
  return `${guestBundleDir}/ld-linux-x86-64.so.2 --library-path ${guestBundleDir}/lib ${guestBundleDir}/${program}`
}

/**
 * Directories the guest init mounts on (`mount`: they must be directories, whatever the image has
 * by that name) or writes to (only made where the image has nothing by that name), with their modes.
 */
export const guestMountPoints: readonly { path: string; mode: number; mount: boolean }[] = [
  { path: 'proc', mode: 0o555, mount: true },
  { path: 'sys', mode: 0o555, mount: true },
  { path: 'dev', mode: 0o755, mount: true },
  { path: 'run', mode: 0o755, mount: true },
  { path: 'tmp', mode: 0o1777, mount: true },
  { path: 'etc', mode: 0o755, mount: false },
  { path: 'root', mode: 0o700, mount: false },
]

/** The initramfs's /init: load modules, mount the root disk, hand over to the guest init. */
export const initramfsInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in ${initramfsModules.join(' ')}; do insmod /modules/$m.ko || echo "initramfs: insmod $m failed"; done
# The disk appears when virtio_mmio probes it; the kernel does that synchronously on load,
# so this only waits in the unusual case it is late.
i=0; while [ ! -b /dev/vda ] && [ $i -lt 500 ]; do usleep 10000; i=$((i+1)); done
mount -t ext4 -o rw,noatime /dev/vda /newroot || { echo "initramfs: cannot mount /dev/vda"; poweroff -f; }
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot ${guestDir}/init
`

/**
 * The guest root's init (pid 1): mounts, hostname from the kernel command line, then keeps the
 * bundled guest agent running on its virtio-serial port. Reaps orphans as pid 1 must. Runs
 * nothing of the image: busybox and the bundle are the guest build's.
 */
export const guestInit = `#!${guestBusybox} sh
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
bb=${guestBusybox}
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mkdir -p /dev/pts /dev/shm /run /tmp
$bb mount -t devpts devpts /dev/pts
$bb mount -t tmpfs -o mode=1777 tmpfs /dev/shm
$bb mount -t tmpfs -o mode=755 tmpfs /run
$bb mount -t tmpfs -o mode=1777 tmpfs /tmp
ip= gw=
for a in $($bb cat /proc/cmdline); do
  case "$a" in
    sandstorm.hostname=*) $bb hostname "\${a#sandstorm.hostname=}";;
    sandstorm.ip=*) ip="\${a#sandstorm.ip=}";;
    sandstorm.gw=*) gw="\${a#sandstorm.gw=}";;
  esac
done
$bb ip link set lo up 2>/dev/null
# No IPv6 in a sandbox; and its address, its route and the gateway's resolver when it has a network.
[ -w /proc/sys/net/ipv6/conf/all/disable_ipv6 ] && echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6
if [ -n "$ip" ] && [ -n "$gw" ]; then
  $bb ip addr add "$ip" peer "$gw" dev eth0 && $bb ip link set eth0 up && $bb ip route add default via "$gw" dev eth0
  echo "nameserver $gw" > /etc/resolv.conf
fi
port=
for p in /sys/class/virtio-ports/*; do
  [ "$($bb cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/$($bb basename "$p")
done
[ -n "$port" ] || { echo "sandstorm init: no guest agent port"; $bb poweroff -f; }
$bb mkdir -p /run/sandstorm
echo ready > /dev/console
while true; do ${bundledCommand('qemu-ga')} -m virtio-serial -p "$port" -t /run/sandstorm; done &
# pid 1 only waits: orphans are reparented here and reaped by the shell.
while true; do wait; $bb sleep 3600; done
`

/**
 * The exec wrapper, run by the guest agent as `sh -c wrapper x cwd uid gid out err argv...`:
 * a new session (so that a kill reaches the whole tree), output to files the host opened before
 * it ran and polls by handle (their names removed here: busybox's shell runs `rm` as its own
 * applet, whatever PATH the command has), the requested user and cwd.
 */
export const execWrapper = [
  `u=$2; g=$3; out=$4; err=$5`,
  // The host has the files open already; once they are this shell's output, their names go.
  `exec >>"$out" 2>>"$err" </dev/null || exit 126`,
  `rm -f -- "$out" "$err"`,
  `cd -- "$1" 2>/dev/null || { echo "cwd $1 does not exist" >&2; exit 127; }`,
  `shift 5`,
  `if [ "$u" = 0 ] && [ "$g" = 0 ]; then exec ${guestBusybox} setsid "$@"; fi`,
  // The bundled setpriv when the guest has one (an image needs none of its own); guests built before the bundle have the image's.
  `if [ -x ${guestBundleDir}/setpriv ]; then exec ${guestBusybox} setsid ${bundledCommand('setpriv')} --reuid="$u" --regid="$g" --clear-groups -- "$@"; fi`,
  `exec ${guestBusybox} setsid /usr/bin/setpriv --reuid="$u" --regid="$g" --clear-groups -- "$@"`,
].join('\n')

/**
 * A command that sets the guest clock to positional argument `n`, the host's time in seconds with a
 * fraction. Not the guest agent's guest-set-time: that also writes the RTC through hwclock, which
 * took 0.7–1.4 s in a fresh clone under TCG. GNU date keeps the fraction; busybox's the seconds.
 */
export function setClockCommand(n: number): string {
  return `{ [ -x /bin/date ] && /bin/date -s "@$${n}" >/dev/null; } || ${guestBusybox} date -s "@\${${n}%.*}" >/dev/null || exit 1`
}

/** The host's time for setClockCommand, taken as late as possible. */
export function hostEpoch(): string {
  return (Date.now() / 1000).toFixed(3)
}

/**
 * Gives a restored clone its own link address and IP (its memory holds its machine's), run as
 * `sh -c script x mac address gateway`; with no address (a clone without a network) the link
 * goes down.
 */
export const guestNetworkScript = [
  `bb=${guestBusybox}`,
  '$bb ip link set eth0 down 2>/dev/null',
  '$bb ip addr flush dev eth0 2>/dev/null',
  '[ -n "$2" ] || exit 0',
  '$bb ip link set eth0 address "$1" || exit 1',
  '$bb ip addr add "$2" peer "$3" dev eth0 || exit 1',
  '$bb ip link set eth0 up || exit 1',
  '$bb ip route replace default via "$3" dev eth0 || exit 1',
].join('\n')

/** Where saveMachine puts the CRNG reseed helper (reseed-helper.ts): tmpfs, so it is saved in RAM with the machine. */
export const guestReseedPath = '/run/sandstorm/reseed'

/** Where saveMachine puts the identity helper (reseed-helper.ts), beside the reseed helper. */
export const guestIdentityPath = '/run/sandstorm/identity'

/**
 * A restored clone's clock and identity, for machines saved without the identity helper, run as `sh -c script x hostname seedhex epoch`: the host's
 * time (setClockCommand), its own hostname, fresh
 * host randomness mixed into the pool, then the CRNG reseeded from it at once rather than at its
 * next interval, so that no two clones draw the same random numbers.
 */
export const identityScript = [
  setClockCommand(3),
  // Shell builtins where they do: every new program a fresh clone runs is translated anew under TCG.
  `echo "$1" > /proc/sys/kernel/hostname || exit 1`,
  `printf %s "$2" > /dev/urandom || exit 1`,
  `[ ! -x ${guestReseedPath} ] || ${guestReseedPath} || { echo "reseeding the CRNG failed: errno $?" >&2; exit 1; }`,
].join('\n')
