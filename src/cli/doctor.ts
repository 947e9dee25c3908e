/**
 * `sandstorm doctor`: what this host has for running sandboxes (runc, cgroups, the layer store's
 * filesystem, qemu, KVM and the accelerator the probe picks, templates, the cached qemu guest), and
 * a non-zero exit when something required is missing. Local only: it needs no server.
 */
import { accessSync, constants, existsSync, readdirSync, readFileSync, statfsSync } from 'node:fs'
import { join } from 'node:path'
import type { Command } from 'commander'
import { printJson, printTable } from './cli-context.js'
import { parseRuntime } from './create-options.js'
import { defaultDataDir } from './template.js'
import { parseAccel } from './up.js'

/** One finding. A failed required check makes the command exit 1. */
export interface DoctorCheck {
  name: string
  status: 'ok' | 'warn' | 'fail'
  detail: string
  required: boolean
}

/** Options of runDoctor. */
export interface DoctorOptions {
  dataDir: string
  /** @default `<dataDir>/templates` */
  templatesDir?: string
  /** Accelerator `up --accel` would ask for. @default 'auto' */
  accel?: 'kvm' | 'tcg' | 'auto'
  /** Runtimes that must work (qemu checks fail instead of warn when qemu is here). @default ['runc'] */
  require?: string[]
}

/** Everything doctor reports, and whether the host can run what was required. */
export interface DoctorReport {
  ok: boolean
  checks: DoctorCheck[]
}

/** Magic numbers of the filesystems a data dir is likely on (statfs f_type). */
const filesystems: Record<number, string> = {
  0x9123683e: 'btrfs',
  0xef53: 'ext4',
  0x58465342: 'xfs',
  0x01021994: 'tmpfs',
  0x794c7630: 'overlayfs',
  0x2fc12fc1: 'zfs',
}

/** Where executable `name` is, on PATH or the sbin dirs root has; null when nowhere. */
function which(name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin'].filter(Boolean)
  for (const dir of dirs) {
    try {
      accessSync(join(dir, name), constants.X_OK)
      return join(dir, name)
    } catch {
      // Not here.
    }
  }
  return null
}

async function firstLine(binary: string, args: string[]): Promise<string | null> {
  // Loaded here, not at the top: every command's registration is imported by every CLI start.
  const { runProcess } = await import('../shared/run-process.js')
  const r = await runProcess(binary, args, { timeoutMs: 10_000 })
  return r.exitCode === 0 ? r.stdout.split('\n')[0]!.trim() : null
}

async function checkRunc(): Promise<DoctorCheck> {
  const runc = which('runc')
  if (!runc) return { name: 'runc', status: 'fail', detail: 'not installed: expected runc on PATH (apt-get install runc)', required: true }
  const version = await firstLine(runc, ['--version'])
  if (!version) return { name: 'runc', status: 'fail', detail: `${runc} is installed but \`runc --version\` failed`, required: true }
  return { name: 'runc', status: 'ok', detail: `${runc}: ${version}`, required: true }
}

function checkHostFile(name: string, path: string, pkg: string): DoctorCheck {
  return existsSync(path)
    ? { name, status: 'ok', detail: path, required: true }
    : { name, status: 'fail', detail: `${path} missing: expected it from the ${pkg} package (apt-get install ${pkg})`, required: true }
}

/** The sandboxes' PID 1 and the host helpers beside it (seccomp compiler, attach), compiled from native/ by the build. */
async function checkSandboxInit(): Promise<DoctorCheck> {
  const { runcHostHelpers } = await import('../runtime/index.js')
  const missing = [runcHostHelpers.init, runcHostHelpers.initAttach, runcHostHelpers.seccompBpf].filter((path) => !existsSync(path))
  return missing.length === 0
    ? { name: 'sandbox init', status: 'ok', detail: runcHostHelpers.init, required: true }
    : { name: 'sandbox init', status: 'fail', detail: `${missing.join(', ')} missing: run \`npm run build\` (it compiles native/*.c; apt-get install gcc libc6-dev libseccomp-dev)`, required: true }
}

/** cgroup v2 (unified) or v1 (and hybrid); sandboxes need the memory, cpu and pids controllers. */
export function checkCgroups(root = '/sys/fs/cgroup'): DoctorCheck {
  const needed = ['memory', 'cpu', 'pids']
  if (existsSync(join(root, 'cgroup.controllers'))) {
    const have = readFileSync(join(root, 'cgroup.controllers'), 'utf8').trim().split(/\s+/)
    const missing = needed.filter((c) => !have.includes(c))
    return missing.length === 0
      ? { name: 'cgroups', status: 'ok', detail: `v2 (unified) with ${have.join(', ')}`, required: true }
      : { name: 'cgroups', status: 'fail', detail: `v2 without ${missing.join(', ')}: expected the ${needed.join(', ')} controllers enabled`, required: true }
  }
  const have = existsSync(root) ? readdirSync(root) : []
  const missing = [...needed, 'freezer'].filter((c) => !have.includes(c))
  const layout = have.includes('unified') ? 'v1 (hybrid, with a v2 mount at unified)' : 'v1'
  return missing.length === 0
    ? { name: 'cgroups', status: 'ok', detail: `${layout} with ${[...needed, 'freezer'].join(', ')}`, required: true }
    : { name: 'cgroups', status: 'fail', detail: `${layout} without ${missing.join(', ')}: expected the ${[...needed, 'freezer'].join(', ')} controllers mounted`, required: true }
}

/** The filesystem under the layer store picks its driver: btrfs snapshots subvolumes, anything else stacks overlays. */
function checkStorage(dataDir: string): DoctorCheck {
  const storage = join(dataDir, 'storage')
  const at = [storage, dataDir, '/'].find((p) => existsSync(p))!
  const fs = filesystems[Number(statfsSync(at).type)] ?? `filesystem type 0x${Number(statfsSync(at).type).toString(16)}`
  const where = at === storage ? storage : `${at} (${storage} is not made yet)`
  if (fs === 'btrfs') return { name: 'storage', status: 'ok', detail: `btrfs driver: ${where} is on btrfs (snapshots are subvolume snapshots)`, required: true }
  if (fs === 'overlayfs') return { name: 'storage', status: 'fail', detail: `${where} is on overlayfs: expected a filesystem an overlay upper layer can live on (ext4, xfs, btrfs)`, required: true }
  return { name: 'storage', status: 'ok', detail: `overlay driver: ${where} is on ${fs} (\`sandstorm setup --btrfs-loop SIZE\` makes snapshots instant)`, required: true }
}

async function checkQemu(required: boolean): Promise<DoctorCheck[]> {
  const qemu = which('qemu-system-x86_64')
  const img = which('qemu-img')
  const failed = required ? 'fail' : 'warn'
  const out: DoctorCheck[] = []
  if (!qemu) out.push({ name: 'qemu', status: failed, detail: 'not installed: the qemu runtime is off (apt-get install qemu-system-x86 qemu-utils)', required })
  else out.push({ name: 'qemu', status: 'ok', detail: `${qemu}: ${(await firstLine(qemu, ['--version'])) ?? 'version unknown'}`, required })
  if (qemu && !img) out.push({ name: 'qemu-img', status: failed, detail: 'not installed: VM disks are qcow2 overlays made by it (apt-get install qemu-utils)', required })
  return out
}

/** What the accelerator probe decides and why (the same rule as the qemu runtime's probeAccel). */
export function accelChoice(accel: 'kvm' | 'tcg' | 'auto', host: { kvm: boolean; hypervisor: boolean }): { accel: 'kvm' | 'tcg'; reason: string } {
  if (accel !== 'auto') return { accel, reason: `--accel ${accel} asked for it` }
  if (!host.kvm) return { accel: 'tcg', reason: '/dev/kvm is missing: emulation (TCG)' }
  if (host.hypervisor) return { accel: 'tcg', reason: 'this host is itself a VM: nested KVM was measured far slower than TCG here' }
  return { accel: 'kvm', reason: '/dev/kvm works on bare metal' }
}

async function checkAccel(accel: 'kvm' | 'tcg' | 'auto'): Promise<DoctorCheck> {
  const kvm = existsSync('/dev/kvm')
  let kvmUsable = false
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK)
    kvmUsable = true
  } catch {
    // Left false.
  }
  const hypervisor = /^flags\s*:.*\bhypervisor\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'))
  const choice = accelChoice(accel, { kvm, hypervisor })
  // The runtime's own probe decides; the reason above is doctor's reading of the same rule.
  const { probeAccel } = await import('../runtime/index.js')
  const picked = probeAccel(accel)
  const reason = picked === choice.accel ? choice.reason : 'the qemu runtime\'s probe'
  if (picked === 'kvm' && !kvmUsable) return { name: 'accel', status: 'fail', detail: `kvm (${reason}), but /dev/kvm cannot be opened for reading and writing: expected access, or --accel tcg`, required: false }
  return { name: 'accel', status: 'ok', detail: `${picked}: ${reason}`, required: false }
}

/** Templates with a current version (read from disk: doctor must not touch a store another process uses). */
function checkTemplates(dir: string): DoctorCheck {
  const names = existsSync(dir) ? readdirSync(dir).filter((n) => !n.startsWith('.') && existsSync(join(dir, n, 'current', 'template.json'))) : []
  if (names.length === 0) return { name: 'templates', status: 'fail', detail: `none in ${dir}: expected at least one (sandstorm template build debian)`, required: true }
  return { name: 'templates', status: 'ok', detail: `${names.join(', ')} in ${dir}`, required: true }
}

/** The qemu guest (kernel, initramfs, root image) is built on the first qemu create and cached. */
function checkGuest(dataDir: string): DoctorCheck {
  const dir = join(dataDir, 'qemu', 'guest')
  const built = existsSync(dir)
    ? readdirSync(dir).filter((n) => ['vmlinux', 'initramfs.cpio.gz', 'root.ext4'].every((f) => existsSync(join(dir, n, f))))
    : []
  if (built.length === 0) return { name: 'qemu guest', status: 'warn', detail: `not cached in ${dir}: the first qemu create builds it (unpacks linux-image-amd64, makes the initramfs and root image)`, required: false }
  return { name: 'qemu guest', status: 'ok', detail: `cached for ${built.length} template root${built.length === 1 ? '' : 's'} in ${dir}`, required: false }
}

/** Sandbox networking: nftables and the agent's helper that applies rulesets through libnftables. */
async function checkNetwork(): Promise<DoctorCheck[]> {
  // Loaded here: every other command of the CLI would load the agent's network code otherwise.
  const { nftHelperPath } = await import('../network/index.js')
  const nft = which('nft')
  return [
    nft
      ? { name: 'nftables', status: 'ok', detail: nft, required: true }
      : { name: 'nftables', status: 'fail', detail: 'not installed: sandbox networks need it (apt-get install nftables)', required: true },
    checkHostFile('nft helper', nftHelperPath, 'libnftables-dev, then npm run build'),
  ]
}

/** Runs every check. */
export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const qemuRequired = (options.require ?? []).includes('qemu')
  const checks: DoctorCheck[] = [
    await checkRunc(),
    await checkSandboxInit(),
    checkHostFile('busybox', '/bin/busybox', 'busybox-static'),
    ...(await checkNetwork()),
    checkCgroups(),
    checkStorage(options.dataDir),
    checkTemplates(options.templatesDir ?? join(options.dataDir, 'templates')),
    ...(await checkQemu(qemuRequired)),
  ]
  if (which('qemu-system-x86_64')) checks.push(await checkAccel(options.accel ?? 'auto'), checkGuest(options.dataDir))
  return { ok: checks.every((c) => c.status !== 'fail' || !c.required), checks }
}

/** Registers `doctor`. */
export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('check this host: runc, cgroups, storage, qemu and KVM, templates, the qemu guest (exit 1 when something required is missing)')
    .option('--data-dir <dir>', 'data directory', defaultDataDir())
    .option('--templates-dir <dir>', 'where templates are (default <data-dir>/templates)')
    .option('--accel <accel>', 'accelerator to check: kvm, tcg or auto', 'auto')
    .option('--runtime <name>', 'a runtime that must work (qemu makes the qemu checks required)', 'runc')
    .option('--json', 'print JSON')
    .action(async (flags: { dataDir: string; templatesDir?: string; accel: string; runtime: string; json?: boolean }) => {
      const report = await runDoctor({
        dataDir: flags.dataDir,
        templatesDir: flags.templatesDir ?? process.env.SANDSTORM_TEMPLATES_DIR,
        accel: parseAccel(flags.accel),
        require: [parseRuntime(flags.runtime)],
      })
      if (flags.json) printJson(report)
      else printTable(['CHECK', 'STATUS', 'DETAIL'], report.checks.map((c) => [c.name, c.status === 'fail' && !c.required ? 'warn' : c.status, c.detail]))
      if (!report.ok) process.exitCode = 1
    })
}
