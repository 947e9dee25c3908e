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
    // of scheduling and resources too. Not elevateprivileges=deny (-daemonize then exits at start)
    // nor spawn=deny (saves and loads go through exec:, as QEMU 7.2 has no file: migration).
    '-sandbox', 'on,obsolete=deny,resourcecontrol=deny',
    // The guest's console in a ring of QEMU's memory (QMP ringbuf-read shows it): the guest
    // writes to it at will, and a file on the host grew without bound, outside its disk quota.
    '-chardev', `ringbuf,id=console,size=${consoleRingBytes}`,
    '-serial', 'chardev:console',
    '-kernel', input.kernel,
    '-initrd', input.initramfs,
    '-append', cmdline.join(' '),
    '-drive', `id=root,file=${input.diskPath ?? f.disk},format=qcow2,if=none,discard=unmap`,
    '-device', 'virtio-blk-device,drive=root',
    '-device', 'virtio-serial-device',
    '-chardev', `socket,path=${f.qga},server=on,wait=off,id=qga0`,
    '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
    '-device', 'virtio-rng-device',
    ...nicArgs,
    '-qmp', `unix:${f.qmp},server=on,wait=off`,
    '-pidfile', f.pid,
    ...(input.incoming ? ['-S', '-incoming', 'defer'] : []),
    '-daemonize',
  ]
}
