/**
 * Saving a running VM as a machine its clones start from: device state, RAM and disk of one
 * moment (the guest stopped for it), then a disk that stands alone and an overlay for clones.
 */
import { chmod, mkdir, rm, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { runOrThrow, SandstormError, type Logger } from '../../shared/index.js'
import type { MachineImage } from '../backend.js'
import { guestBusybox, guestIdentityPath, guestReseedPath } from './guest-scripts.js'
import { machineFiles, writeMachineConfig } from './machine-image.js'
import { vmFiles } from './qemu-args.js'
import { migrateTimeoutMs, migrateToFile } from './qmp.js'
import { identityHelper, reseedHelper } from './reseed-helper.js'
import type { Vm, VmHost } from './vm-host.js'
import { writeVmRecord } from './vm-record.js'

/** Rebases a qcow2 disk onto the bottom of its backing chain (the raw guest root), copying what lies between. */
async function rebaseOntoRoot(disk: string) {
  const info = await runOrThrow('qemu-img', ['info', '--backing-chain', '--output=json', disk], 'reading the backing chain of a saved disk')
  const chain = JSON.parse(String(info.stdout)) as { filename: string; format: string }[]
  const base = chain.at(-1)
  if (chain.length <= 2 || !base) return
  await runOrThrow('qemu-img', ['rebase', '-q', '-f', 'qcow2', '-F', base.format, '-b', base.filename, disk], 'rebasing a saved disk onto the guest root')
}

/** Saves the VM in `vmDir` as a new machine in `dir` (which must not exist); the VM runs on. */
export async function saveVmMachine(vm: Vm, vmDir: string, dir: string, host: VmHost, log: Logger): Promise<MachineImage> {
  await mkdir(dirname(dir), { recursive: true })
  try {
    await mkdir(dir, { mode: 0o755 })
  } catch {
    throw new SandstormError('already_exists', `expected a new directory for the saved machine, but ${dir} exists`, { expose: false })
  }
  const out = machineFiles(dir)
  const startedAt = Date.now()
  let stopped = false
  let stoppedAt = 0
  let pausedMs = 0
  try {
    // Clones must never wait for entropy: save only once the guest's CRNG is seeded.
    if (!vm.paused) {
      // The helpers go into the guest's tmpfs, so that every clone finds them in RAM.
      for (const [path, bytes] of [[guestReseedPath, reseedHelper()], [guestIdentityPath, identityHelper()]] as const) {
        const handle = await vm.agent.open(path, 'w')
        await vm.agent.write(handle, bytes).finally(() => vm.agent.closeFile(handle))
      }
      const crng = await vm.agent.run(guestBusybox, ['sh', '-c', 'chmod 755 "$0" "$1" && head -c 1 /dev/random >/dev/null', guestReseedPath, guestIdentityPath])
      if (crng.exitCode !== 0) throw new SandstormError('internal', `preparing the guest for a save failed: ${crng.stderr.toString().trim()}`)
      await vm.qmp.call('stop')
      stopped = true
      stoppedAt = Date.now()
      if (!vm.record.identityHelper) {
        vm.record.identityHelper = true
        await writeVmRecord(vmFiles(vmDir).record, vm.record)
      }
    }
    // Stopped, the guest's RAM and disk hold still: device state, RAM and disk are one moment.
    await migrateToFile(vm.qmp, host.filesMonitor(vmDir, vm.record), out.state, migrateTimeoutMs)
    if (vm.record.memShared) {
      await runOrThrow('cp', ['--sparse=always', vm.record.memPath, out.memory], "copying the guest's memory")
    } else {
      // A clone's RAM is a private mapping, so it went into the state stream; the file only gives it room.
      await runOrThrow('truncate', ['-s', `${vm.record.memoryMiB}M`, out.memory], 'sizing the memory file')
    }
    await runOrThrow('cp', ['--sparse=always', '--reflink=auto', host.diskOf(vmDir, vm.record), out.disk], "copying the guest's disk")
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  } finally {
    if (stopped) {
      await vm.qmp.call('cont')
      pausedMs = Date.now() - stoppedAt
      await vm.agent.setTime().catch(() => undefined)
    }
  }
  try {
    // After the guest runs again (neither is part of the moment saved): a clone's disk is an
    // overlay on its machine's disk; rebased onto the guest root below that, this machine
    // stands alone and the one it came from can be deleted.
    if (!vm.record.memShared) await rebaseOntoRoot(out.disk)
    await runOrThrow('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', out.disk, out.overlay], "making the clones' overlay")
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }
  await writeMachineConfig(dir, {
    format: 1,
    memoryMiB: vm.record.memoryMiB,
    cpus: vm.record.cpus,
    accel: vm.record.accel,
    kernel: vm.record.kernel,
    initramfs: vm.record.initramfs,
    hostname: vm.record.hostname,
    ramInState: !vm.record.memShared,
    savedAt: new Date().toISOString(),
    identityHelper: vm.record.identityHelper === true,
    nic: vm.record.nic !== undefined,
    ...(vm.record.diskMiB !== undefined ? { diskMiB: vm.record.diskMiB } : {}),
  })
  for (const f of [out.memory, out.state, out.disk, out.overlay]) await chmod(f, 0o444)
  const sizes = await Promise.all([out.memory, out.state, out.disk].map((f) => stat(f).then((s) => s.blocks * 512)))
  log.info({ sandboxId: vm.id, dir, ms: Date.now() - startedAt, pausedMs, memoryBytes: sizes[0], stateBytes: sizes[1], diskBytes: sizes[2] }, 'VM machine saved')
  return { dir, memoryMiB: vm.record.memoryMiB, cpus: vm.record.cpus }
}
