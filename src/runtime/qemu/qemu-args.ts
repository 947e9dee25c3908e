/**
 * QEMU's command line for one VM. A clone must be started with the same machine and devices, in
 * the same order, as the VM its machine was saved from (the migration stream names them), so one
 * function builds both.
 */
import { join } from 'node:path'
import { clockCmdline } from './guest-clock.js'

/** TCG's translated-code cache, bounded so that QEMU's own memory fits the cgroup's overhead. */
export const tcgCodeCacheMiB = 64
/** QEMU's memory besides guest RAM that the cgroup allows: code cache, device models, heap. */
export const qemuOverheadMiB = tcgCodeCacheMiB + 192

/** What QEMU keeps of a guest's console output: its last 64 KiB. */
const consoleRingBytes = 64 * 1024

/** Files of one VM under its directory. */
export function vmFiles(dir: string) {
  return {
    disk: join(dir, 'disk.qcow2'),
    qga: join(dir, 'qga.sock'),
    qmp: join(dir, 'qmp.sock'),
    /** A second QMP monitor, for the helper that hands QEMU a state file (see vm-jail.ts): the first is the backend's. */
    qmpFiles: join(dir, 'qmp-files.sock'),
    pid: join(dir, 'qemu.pid'),
    /** Which process that pid named: its boot and start time (see vm-process.ts). */
    started: join(dir, 'qemu.started'),
    /** What a later backend needs to take the VM over (see vm-record.ts). */
    record: join(dir, 'vm.json'),
  }
}

/** What the command line is made from. */
export interface QemuArgsInput {
  id: string
  dir: string
  accel: 'kvm' | 'tcg'
  memoryMiB: number
  cpus: number
  kernel: string
  initramfs: string
  hostname: string
  /** Guest RAM: a file mapped shared (a VM that can be saved) or private (a clone of a saved one). */
  memPath: string
  memShared: boolean
  /** The disk, when not the directory's disk.qcow2. */
  diskPath?: string
  /** Start paused, waiting for `migrate-incoming` (a clone). */
  incoming: boolean
  /**
   * The network device: on a tap (opened by name on the host), or on nothing (a sandbox without a
   * network keeps the device, so that every VM of this version can be saved and cloned alike).
   * Unset: no device at all, as VMs of versions before networking (and their clones) have.
   */
  nic?: VmNic
  /** The guest's address and gateway, for a booted (not a cloned) VM with a network. */
  ip?: { address: string; gateway: string }
  /** The arguments that give QEMU its own uid and gid, and shut it in an empty root once it has opened its files (see vm-jail.ts). */
  jailArgs: string[]
}

/** A VM's network device: its MAC and the tap it is on, or no tap. */
export type VmNic = { tap: string; mac: string } | { tap: null; mac: string }

/** The argv after the QEMU binary. */
export function qemuArgs(input: QemuArgsInput): string[] {
  const f = vmFiles(input.dir)
  const cmdline = ['console=ttyS0', 'quiet', 'panic=-1', ...clockCmdline(input.accel), `sandstorm.hostname=${input.hostname}`]
  if (input.ip) cmdline.push(`sandstorm.ip=${input.ip.address}`, `sandstorm.gw=${input.ip.gateway}`)
  const nic = input.nic
  // Last, after every device older versions had: a machine saved before networking keeps its layout.
  const nicArgs = !nic
    ? []
    : [
        '-netdev', nic.tap ? `tap,id=net0,ifname=${nic.tap},script=no,downscript=no` : 'hubport,id=net0,hubid=0',
        '-device', `virtio-net-device,netdev=net0,mac=${nic.mac}`,
      ]
  return [
    '-name', input.id,
    '-M', 'microvm,x-option-roms=off,pit=on,pic=on,rtc=on,isa-serial=on,memory-backend=ram',
    '-accel', input.accel === 'tcg' ? `tcg,tb-size=${tcgCodeCacheMiB}` : 'kvm',
    ...(input.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-m', `${input.memoryMiB}`,
    '-object', `memory-backend-file,id=ram,size=${input.memoryMiB}M,mem-path=${input.memPath},share=${input.memShared ? 'on' : 'off'}`,
    '-smp', `${input.cpus}`,
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    // QEMU's own seccomp filter: its list of syscalls a VM never needs, obsolete ones and changes
    // of scheduling and resources too. Not elevateprivileges=deny: the filter is loaded before
    // QEMU gives up root, which that would forbid (with no capability left, it cannot take root
    // back). Not spawn=deny: -daemonize forks after the filter is loaded; in its empty root,
    // jailed, a QEMU finds no program to start, and one it brought runs as jailed as itself.
    '-sandbox', 'on,obsolete=deny,resourcecontrol=deny',
    ...input.jailArgs,
    // The guest's console in a ring of QEMU's memory (QMP ringbuf-read shows it): the guest
    // writes to it at will, and a file on the host grew without bound, outside its disk quota.
    '-chardev', `ringbuf,id=console,size=${consoleRingBytes}`,
    '-serial', 'chardev:console',
    '-kernel', input.kernel,
    '-initrd', input.initramfs,
    '-append', cmdline.join(' '),
    // Never reopened by path: with auto-read-only, QEMU reopens the image read-only when a save or
    // a load gives up its write permission and read-write when it takes it back, which a jailed
    // QEMU cannot (the save failed). Without it, QEMU keeps the fd it opened the image by.
    '-drive', `id=root,file=${input.diskPath ?? f.disk},format=qcow2,if=none,discard=unmap,auto-read-only=off`,
    '-device', 'virtio-blk-device,drive=root',
    '-device', 'virtio-serial-device',
    '-chardev', `socket,path=${f.qga},server=on,wait=off,id=qga0`,
    '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
    '-device', 'virtio-rng-device',
    ...nicArgs,
    '-qmp', `unix:${f.qmp},server=on,wait=off`,
    '-qmp', `unix:${f.qmpFiles},server=on,wait=off`,
    '-pidfile', f.pid,
    ...(input.incoming ? ['-S', '-incoming', 'defer'] : []),
    '-daemonize',
  ]
}
