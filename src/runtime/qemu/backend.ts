import { existsSync, readFileSync } from 'node:fs'
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { idPattern, SandstormError, silentLogger, type CallOptions, type EntryInfo, type Logger, type ProcessResult } from '../../shared/index.js'
import type { ExecSpec, OutputSink, RuntimeBackend, RuntimeProcess, RuntimeSandbox, SandboxSpec, SandboxStats } from '../backend.js'
import { connectGuestAgent, type GuestAgent } from './guest-agent.js'
import { buildGuest, type GuestArtifacts } from './guest-build.js'
import { guestFsError, guestFsScripts, parseGuestListing, parseGuestStat } from './guest-fs.js'
import { execWrapper, guestBusybox } from './guest-scripts.js'
import { connectJsonChannel, type JsonChannel } from './json-channel.js'

/** Accelerator choice: `auto` probes. */
export type QemuAccel = 'kvm' | 'tcg' | 'auto'

/** Options of the QEMU microVM backend. */
export interface QemuBackendOptions {
  /** VMs and the cached guest live under `<dir>/vms` and `<dir>/guest`. */
  dir: string
  /** @default 'auto' */
  accel?: QemuAccel
  /** @default 'qemu-system-x86_64' */
  binary?: string
  /** How long a cold boot may take to a guest agent that answers. @default 120000 */
  bootTimeoutMs?: number
  logger?: Logger
}

/**
 * KVM only when /dev/kvm exists and this host is not itself a VM: nested guests were measured far
 * slower than TCG on the build machines (a Debian kernel did not boot in 120 s under nested KVM).
 */
export function probeAccel(requested: QemuAccel = 'auto'): 'kvm' | 'tcg' {
  if (requested !== 'auto') return requested
  if (!existsSync('/dev/kvm')) return 'tcg'
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  return /^flags\s*:.*\bhypervisor\b/m.test(cpuinfo) ? 'tcg' : 'kvm'
}

const defaultPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
const pollMs = 20
const readChunk = 1 << 20

interface Vm {
  id: string
  pid: number
  qmp: JsonChannel
  agent: GuestAgent
  env: string[]
  paused: boolean
}

/** The QEMU backend: each sandbox is a `microvm` guest booted straight into the template's root. */
export function createQemuBackend(options: QemuBackendOptions): RuntimeBackend {
  const log = options.logger ?? silentLogger()
  const accel = probeAccel(options.accel)
  const binary = options.binary ?? 'qemu-system-x86_64'
  const vmsDir = join(options.dir, 'vms')
  const vms = new Map<string, Vm>()
  const guests = new Map<string, Promise<GuestArtifacts>>()
  let execSeq = 0

  const dirOf = (id: string) => {
    if (!idPattern.test(id)) throw new SandstormError('invalid_argument', `sandbox id "${id}" is malformed`)
    return join(vmsDir, id)
  }
  const vmOf = (id: string): Vm => {
    const vm = vms.get(dirOf(id) && id)
    if (!vm) throw new SandstormError('not_found', `no VM sandbox "${id}" runs on this host`)
    return vm
  }
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  }

  function guestFor(templateRoot: string): Promise<GuestArtifacts> {
    let g = guests.get(templateRoot)
    if (!g) {
      const key = templateRoot.replace(/[^a-zA-Z0-9]+/g, '_').slice(-80)
      g = buildGuest({ dir: join(options.dir, 'guest', key), templateRoot, logger: log })
      g.catch(() => guests.delete(templateRoot))
      guests.set(templateRoot, g)
    }
    return g
  }

  async function fsRun(id: string, op: string, path: string, script: string, args: string[]): Promise<string> {
    const r = await vmOf(id).agent.run(guestBusybox, ['sh', '-c', script, 'sandstorm-fs', ...args])
    if (r.exitCode !== 0) throw guestFsError(op, path, r.stderr.toString())
    return r.stdout.toString()
  }

  async function stopQemu(dir: string, pid: number | null, qmp?: JsonChannel) {
    if (qmp) {
      await qmp.call('quit', undefined, 2000).catch(() => undefined)
      await Promise.race([qmp.closed, sleep(2000)])
      qmp.close()
    }
    if (pid && alive(pid)) process.kill(pid, 'SIGKILL')
    for (let i = 0; pid && alive(pid) && i < 400; i++) await sleep(5)
    await rm(dir, { recursive: true, force: true })
  }

  const backend: RuntimeBackend = {
    name: 'qemu',

    async create(spec: SandboxSpec, call: CallOptions = {}): Promise<RuntimeSandbox> {
      const dir = dirOf(spec.id)
      if (spec.rootfs.lowerDirs.length !== 1) {
        throw new SandstormError('invalid_argument', `the qemu runtime boots a template's root alone; expected 1 layer, got ${spec.rootfs.lowerDirs.length} (snapshots of VM sandboxes are not supported yet)`)
      }
      const guest = await guestFor(spec.rootfs.lowerDirs[0]!)
      await mkdir(vmsDir, { recursive: true, mode: 0o700 })
      try {
        await mkdir(dir, { mode: 0o700 })
      } catch {
        throw new SandstormError('already_exists', `sandbox "${spec.id}" already exists on this host`)
      }
      let pid: number | null = null
      let qmp: JsonChannel | undefined
      try {
        const overlay = join(dir, 'disk.qcow2')
        await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', guest.rootImage, overlay])
        const hostname = spec.hostname.replace(/[^a-zA-Z0-9-]/g, '') || 'sandbox'
        const args = [
          '-name', spec.id,
          '-M', 'microvm,x-option-roms=off,pit=on,pic=on,rtc=on,isa-serial=on',
          '-accel', accel,
          ...(accel === 'kvm' ? ['-cpu', 'host'] : []),
          '-m', `${spec.memoryMiB}`,
          '-smp', `${spec.cpus}`,
          '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
          '-serial', `file:${join(dir, 'console.log')}`,
          '-kernel', guest.kernel,
          '-initrd', guest.initramfs,
          // TCG gives the kernel no reliable timer to calibrate against: a fixed loops-per-jiffy skips that step.
          '-append', `console=ttyS0 quiet panic=-1 no_timer_check lpj=8000000 sandstorm.hostname=${hostname}`,
          '-drive', `id=root,file=${overlay},format=qcow2,if=none,discard=unmap`,
          '-device', 'virtio-blk-device,drive=root',
          '-device', 'virtio-serial-device',
          '-chardev', `socket,path=${join(dir, 'qga.sock')},server=on,wait=off,id=qga0`,
          '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
          '-device', 'virtio-rng-device',
          '-qmp', `unix:${join(dir, 'qmp.sock')},server=on,wait=off`,
          '-pidfile', join(dir, 'qemu.pid'),
          '-daemonize',
        ]
        const started = await execa(binary, args, { reject: false, all: true, cancelSignal: call.signal })
        if (started.exitCode !== 0) throw new SandstormError('internal', `qemu did not start: ${String(started.all).trim().split('\n').pop()}`)
        pid = Number((await readFile(join(dir, 'qemu.pid'), 'utf8')).trim())
        qmp = await connectJsonChannel(join(dir, 'qmp.sock'), 'QMP')
        await qmp.call('qmp_capabilities')
        const agent = await connectGuestAgent(join(dir, 'qga.sock'), options.bootTimeoutMs ?? 120_000, () => !alive(pid!))
        await agent.setTime()
        const env = [`PATH=${defaultPath}`, ...Object.entries(spec.env).map(([k, v]) => `${k}=${v}`)]
        vms.set(spec.id, { id: spec.id, pid, qmp, agent, env, paused: false })
        log.info({ sandboxId: spec.id, accel }, 'VM sandbox started')
        return { id: spec.id, status: 'running', pid }
      } catch (err) {
        await stopQemu(dir, pid, qmp).catch(() => undefined)
        throw err
      }
    },

    async destroy(id: string): Promise<void> {
      const dir = dirOf(id)
      const vm = vms.get(id)
      vms.delete(id)
      vm?.agent.close()
      const pid = vm?.pid ?? Number((await readFile(join(dir, 'qemu.pid'), 'utf8').catch(() => '0')).trim())
      await stopQemu(dir, pid || null, vm?.qmp)
      log.info({ sandboxId: id }, 'VM sandbox destroyed')
    },

    async list(): Promise<RuntimeSandbox[]> {
      const out: RuntimeSandbox[] = []
      for (const id of await readdir(vmsDir).catch(() => [] as string[])) {
        const vm = vms.get(id)
        const pid = vm?.pid ?? Number((await readFile(join(vmsDir, id, 'qemu.pid'), 'utf8').catch(() => '0')).trim())
        const running = pid > 0 && alive(pid)
        out.push({ id, pid: running ? pid : null, status: !running ? 'stopped' : vm?.paused ? 'paused' : 'running' })
      }
      return out
    },

    async pause(id: string) {
      const vm = vmOf(id)
      await vm.qmp.call('stop')
      vm.paused = true
    },
    async resume(id: string) {
      const vm = vmOf(id)
      await vm.qmp.call('cont')
      vm.paused = false
      await vm.agent.setTime()
    },

    async stats(id: string): Promise<SandboxStats> {
      const vm = vmOf(id)
      const status = await readFile(`/proc/${vm.pid}/status`, 'utf8')
      const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
      const stat = await readFile(`/proc/${vm.pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const ticks = Number(fields[11]) + Number(fields[12])
      // The guest's processes are not visible from the host: the QEMU process counts as one.
      return { memoryBytes: rssKiB * 1024, cpuNanos: ticks * 10_000_000, pids: 1 }
    },

    async exec(id: string, spec: ExecSpec, sink: OutputSink, call: CallOptions = {}): Promise<RuntimeProcess> {
      const vm = vmOf(id)
      const n = ++execSeq
      const out = `/run/sandstorm/exec-${n}.out`
      const err = `/run/sandstorm/exec-${n}.err`
      const home = spec.env.HOME ?? (spec.uid === 0 ? '/root' : '/')
      const env = [...vm.env, `HOME=${home}`, ...Object.entries(spec.env).map(([k, v]) => `${k}=${v}`)]
      const startedAt = Date.now()
      const pid = await vm.agent.exec(guestBusybox, ['sh', '-c', execWrapper, 'sandstorm-exec', spec.cwd, `${spec.uid}`, `${spec.gid}`, out, err, ...spec.argv], env, false)
      let sentSignal: NodeJS.Signals | null = null
      let timedOut = false
      let ended = false
      const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
        if (ended) return
        sentSignal = signal
        await vm.agent.run(guestBusybox, ['kill', `-${signal.replace(/^SIG/, '')}`, '--', `-${pid}`]).catch(() => undefined)
      }
      const timer = spec.timeoutMs ? setTimeout(() => ((timedOut = true), void kill('SIGKILL')), spec.timeoutMs) : undefined
      const onAbort = () => void kill('SIGKILL')
      call.signal?.addEventListener('abort', onAbort, { once: true })

      // Output goes to files in the guest; they are polled from where the last read stopped.
      const streams = [
        { path: out, handle: -1, offset: 0, emit: (c: Buffer) => sink.onStdout(c) },
        { path: err, handle: -1, offset: 0, emit: (c: Buffer) => sink.onStderr(c) },
      ]
      const drain = async () => {
        for (const s of streams) {
          if (s.handle < 0) s.handle = await vm.agent.open(s.path, 'r').catch(() => -1)
          if (s.handle < 0) continue
          for (;;) {
            const r = await vm.agent.read(s.handle, readChunk, s.offset)
            if (r.data.length > 0) {
              s.offset += r.data.length
              s.emit(r.data)
            }
            if (r.data.length < readChunk) break
          }
        }
      }
      const result = (async (): Promise<ProcessResult> => {
        let status
        for (;;) {
          status = await vm.agent.status(pid)
          await drain()
          if (status.exited) break
          await sleep(pollMs)
        }
        await drain()
        ended = true
        clearTimeout(timer)
        call.signal?.removeEventListener('abort', onAbort)
        for (const s of streams) if (s.handle >= 0) await vm.agent.closeFile(s.handle).catch(() => undefined)
        await vm.agent.run(guestBusybox, ['rm', '-f', out, err]).catch(() => undefined)
        const exitCode = status.exitcode ?? 128 + (status.signal ?? 0)
        return { exitCode, signal: sentSignal, timedOut, oomKilled: false, durationMs: Date.now() - startedAt }
      })()
      return {
        pid,
        result,
        writeStdin: async () => {
          throw new SandstormError('failed_precondition', 'stdin of a VM sandbox process is not supported: the guest agent takes input only at start')
        },
        closeStdin: () => undefined,
        kill,
      }
    },

    async *readFile(id: string, path: string): AsyncIterable<Uint8Array> {
      const agent = vmOf(id).agent
      const handle = await agent.open(path, 'r').catch((e: Error) => {
        throw guestFsError('read', path, e.message)
      })
      try {
        for (;;) {
          const r = await agent.read(handle, readChunk).catch((e: Error) => {
            throw guestFsError('read', path, e.message)
          })
          if (r.data.length > 0) yield r.data
          if (r.eof || r.data.length === 0) break
        }
      } finally {
        await agent.closeFile(handle).catch(() => undefined)
      }
    },

    async writeFile(id: string, path: string, data: AsyncIterable<Uint8Array>): Promise<void> {
      await fsRun(id, 'write', path, guestFsScripts.parentOf, [path])
      const agent = vmOf(id).agent
      const handle = await agent.open(path, 'w').catch((e: Error) => {
        throw guestFsError('write', path, e.message)
      })
      try {
        for await (const chunk of data) {
          for (let at = 0; at < chunk.length; at += readChunk) await agent.write(handle, chunk.subarray(at, at + readChunk))
        }
      } finally {
        await agent.closeFile(handle).catch(() => undefined)
      }
    },

    async listDir(id: string, path: string): Promise<EntryInfo[]> {
      return parseGuestListing(await fsRun(id, 'list', path, guestFsScripts.list, [path]), path)
    },
    async stat(id: string, path: string): Promise<EntryInfo> {
      return parseGuestStat(await fsRun(id, 'stat', path, guestFsScripts.stat, [path]), path)
    },
    async mkdir(id: string, path: string, parents: boolean): Promise<void> {
      await fsRun(id, 'mkdir', path, parents ? guestFsScripts.mkdirParents : guestFsScripts.mkdir, [path])
    },
    async remove(id: string, path: string, recursive: boolean): Promise<void> {
      await fsRun(id, 'remove', path, recursive ? guestFsScripts.removeRecursive : guestFsScripts.remove, [path])
    },
    async rename(id: string, from: string, to: string): Promise<void> {
      await fsRun(id, 'rename', from, guestFsScripts.rename, [from, to])
    },
    async resolveUser(id: string, user: string) {
      if (user === 'root') return { uid: 0, gid: 0, home: '/root' }
      try {
        const [uid, gid, home] = (await fsRun(id, 'resolve user', user, guestFsScripts.resolveUser, [user])).split('\n')
        return { uid: Number(uid), gid: Number(gid), home: home || '/' }
      } catch {
        throw new SandstormError('invalid_argument', `user "${user}" does not exist in the sandbox (expected a name from its /etc/passwd, or a uid)`)
      }
    },
  }
  return backend
}
