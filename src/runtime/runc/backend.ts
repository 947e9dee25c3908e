import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { mkdir, readFile, rm } from 'node:fs/promises'
import { posix } from 'node:path'
import { idPattern, linkSignal, SandstormError, silentLogger, type CallOptions, type EntryInfo, type Logger } from '../../shared/index.js'
import { overlayMountData, unmount } from '../../storage/index.js'
import type { ExecSpec, OutputSink, RootfsSpec, RuntimeBackend, RuntimeProcess, RuntimeSandbox, SandboxSpec, TerminalSize } from '../backend.js'
import { checkTerminalSize } from '../terminal-size.js'
import { freezeSandbox, killFrozenSandbox, removeExecCgroups, removeSandboxCgroups, sandboxFrozen, sandboxUsage, setSandboxCpuWeight, thawSandbox } from './cgroups.js'
import { attachInit } from './init-attach.js'
import { createInitChannel, type InitChannel } from './init-channel.js'
import { startInitChild, type SandboxChild } from './init-child.js'
import { initAlive, killInit } from './init-kill.js'
import { fsError, fsScripts, parseListing, parseStat, readAll, readHead, scriptArgv } from './fs-ops.js'
import { sandboxPaths, type RuncLayout } from './layout.js'
import { switchRoot } from './root-switch.js'
import { buildOciSpec, defaultPath } from './oci-spec.js'
import { sandboxSeccompProgram } from './seccomp-program.js'
import { createRuncCli, type RuncContainer } from './runc-cli.js'

/**
 * The longest wait for the init's answer to a reset: it first waits (up to 10 s) for the reports of
 * commands still starting, so that they end with the reset, then up to 2 s for the killed to go.
 */
const resetWaitMs = 15_000

const rejectAfter = (ms: number) => new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms).unref())

/** A sandbox's own variables as its commands get them, after PATH and HOME (which each command sets). */
const sandboxVars = (env: Record<string, string>): string[] => Object.entries(env).map(([k, v]) => `${k}=${v}`).filter((e) => !e.startsWith('PATH=') && !e.startsWith('HOME='))

/** Options of the runc backend. */
export interface RuncBackendOptions extends RuncLayout {
  /** The OCI runtime binary. @default 'runc' */
  binary?: string
  logger?: Logger
}

/** The runc backend: each sandbox is an OCI container on an overlay root. */
export function createRuncBackend(options: RuncBackendOptions): RuntimeBackend {
  const runc = createRuncCli({ binary: options.binary, stateRoot: options.stateRoot })
  const log = options.logger ?? silentLogger()
  const ready = Promise.all([
    mkdir(options.stateRoot, { recursive: true, mode: 0o700 }),
    mkdir(options.sandboxesDir, { recursive: true, mode: 0o700 }),
  ])
  // Compiled on the first create, not per sandbox; a failure is tried again on the next create.
  let compiled: Promise<Buffer> | undefined
  const seccompProgram = () =>
    (compiled ??= sandboxSeccompProgram().catch((err: unknown) => {
      compiled = undefined
      throw err
    }))

  const paths = (id: string) => {
    if (!idPattern.test(id)) throw new SandstormError('invalid_argument', `sandbox id "${id}" is malformed`)
    return sandboxPaths(options, id)
  }

  const checked = (id: string) => paths(id) && id

  /** Runs a file script as root of the sandbox (not of the host) and fails with a coded error. */
  async function runScript(id: string, op: string, path: string, script: string, args: string[], call: CallOptions = {}) {
    const child = await start(id, scriptArgv(script, args), call)
    child.closeStdin()
    const [out, err, result] = await Promise.all([readAll(child.stdout, `${op} ${path}`, () => child.kill()), readHead(child.stderr), child.result])
    if (result.exitCode !== 0) throw fsError(op, path, err)
    return out
  }

  async function start(id: string, argv: string[], call: CallOptions, user = { uid: 0, gid: 0, home: '/root' }, extraEnv: string[] = [], cwd = '/', timeoutMs?: number, pty?: TerminalSize): Promise<SandboxChild> {
    paths(id)
    for (;;) {
      // A command asked for while the root is switched starts on the new root, after the switch:
      // checked again after every wait, so that none reaches the init between its reset and the switch.
      await renewing.get(id)?.catch(() => undefined)
      if (paused.has(id)) throw new SandstormError('failed_precondition', `the sandbox is paused: resume it first`)
      const options = {
        sandboxId: id,
        argv,
        env: [`PATH=${defaultPath}`, `HOME=${user.home}`, ...(await sandboxEnv(id)), ...extraEnv],
        cwd,
        uid: user.uid,
        gid: user.gid,
        timeoutMs: timeoutMs ?? call.timeoutMs,
        killSignal: linkSignal({ signal: call.signal }),
        ...(pty ? { pty } : {}),
      }
      const channel = await channelTo(id)
      if (!renewing.has(id)) return startInitChild(channel, options)
    }
  }

  /** The channel to each sandbox's init: made at create, or attached on first use after a restart. */
  const inits = new Map<string, InitChannel>()
  const attaching = new Map<string, Promise<InitChannel>>()

  /**
   * The sandbox's init starts every command. A sandbox an earlier agent process started (or whose
   * channel broke) gets a new channel handed to its init, once, however many commands ask.
   */
  function channelTo(id: string): InitChannel | Promise<InitChannel> {
    const open = inits.get(id)
    if (open?.open) return open
    let pending = attaching.get(id)
    if (!pending) {
      pending = attach(id).finally(() => attaching.delete(id))
      attaching.set(id, pending)
    }
    return pending
  }

  async function attach(id: string): Promise<InitChannel> {
    const init = runc.initProcess(id)
    if (!init || !initAlive(init)) throw new SandstormError('failed_precondition', `the sandbox is not running`)
    if (sandboxFrozen(id)) throw new SandstormError('failed_precondition', `the sandbox is paused: resume it first`)
    const channel = await attachInit(init, await listenNameOf(id), createInitChannel)
    await channel.ready.catch(() => {
      throw new SandstormError('unavailable', "the sandbox's init took the channel and closed it")
    })
    inits.get(id)?.close()
    inits.set(id, channel)
    log.info({ sandboxId: id }, 'attached to the init of a sandbox an earlier agent started')
    return channel
  }
  /** Sandboxes paused by their user (a snapshot's momentary freeze is not a pause). */
  const paused = new Set<string>()
  /** Sandboxes whose root is being switched (renew). */
  const renewing = new Map<string, Promise<void>>()

  /** The reset and the root switch of a restore in place (see RuntimeBackend.renew). */
  async function renew(id: string, rootfs: RootfsSpec, env: Record<string, string>, snapshotId: string): Promise<void> {
    const p = paths(id)
    if (paused.has(id)) throw new SandstormError('failed_precondition', 'the sandbox is paused: resume it first')
    const init = runc.initProcess(id)
    if (!init || !initAlive(init)) throw new SandstormError('failed_precondition', 'the sandbox is not running')
    const startedAt = performance.now()
    // The init answers within its own waits (resetWaitMs); a frozen one (a pause raced the restore) never does.
    const channel = await channelTo(id)
    const left = await Promise.race([channel.reset(snapshotId), rejectAfter(resetWaitMs)]).catch((err: unknown) => {
      throw new SandstormError('internal', "the sandbox's init did not answer the reset of a restore", { cause: err })
    })
    if (left !== 0) throw new SandstormError('internal', 'a process of the sandbox outlived SIGKILL: its root is not switched')
    const resetAt = performance.now()
    await switchRoot(init, rootfs)
    const switchedAt = performance.now()
    // The config's env is what commands get after an agent restart (sandboxEnv); its root mount
    // was runc's to make once and is not read again, so it stays as it was.
    const config = JSON.parse(readFileSync(p.config, 'utf8')) as { process: { env: string[] } }
    config.process.env = [`PATH=${defaultPath}`, 'HOME=/root', ...Object.entries(env).map(([k, v]) => `${k}=${v}`)]
    writeFileSync(`${p.config}.tmp`, JSON.stringify(config), { mode: 0o600 })
    renameSync(`${p.config}.tmp`, p.config)
    envCache.set(id, sandboxVars(env))
    const ms = (a: number, b: number) => Math.round((b - a) * 10) / 10
    log.debug({ sandboxId: id, phasesMs: { reset: ms(startedAt, resetAt), switch: ms(resetAt, switchedAt), config: ms(switchedAt, performance.now()) } }, 'sandbox root switched')
  }

  /** The abstract name the sandbox's init listens on, from its config (none in configs of older versions). */
  async function listenNameOf(id: string): Promise<string | undefined> {
    const config = JSON.parse(await readFile(paths(id).config, 'utf8')) as { process: { args: string[] } }
    return config.process.args[1]
  }

  const envCache = new Map<string, string[]>()
  async function sandboxEnv(id: string): Promise<string[]> {
    let env = envCache.get(id)
    if (!env) {
      const config = JSON.parse(await readFile(paths(id).config, 'utf8')) as { process: { env: string[] } }
      env = config.process.env.filter((e) => !e.startsWith('PATH=') && !e.startsWith('HOME='))
      envCache.set(id, env)
    }
    return env
  }

  const backend: RuntimeBackend = {
    name: 'runc',

    close() {
      runc.close()
    },

    async create(spec: SandboxSpec, call?: CallOptions): Promise<RuntimeSandbox> {
      await ready
      const p = paths(spec.id)
      // The directories and the config (tens of KiB) are made synchronously: each takes
      // microseconds, while async calls wait in libuv's pool behind whatever queued there first
      // (on a restore, the old sandbox's teardown).
      try {
        mkdirSync(p.dir, { mode: 0o700 })
      } catch {
        throw new SandstormError('already_exists', `sandbox "${spec.id}" already exists on this host`)
      }
      try {
        const overlay = { lowerDirs: spec.rootfs.lowerDirs, upperDir: spec.rootfs.upperDir ?? p.upper, workDir: spec.rootfs.workDir ?? p.work }
        const rootData = overlayMountData(overlay)
        for (const dir of [overlay.upperDir, overlay.workDir, p.rootfs]) mkdirSync(dir, { recursive: true })
        writeFileSync(p.config, JSON.stringify(buildOciSpec(spec, rootData)), { mode: 0o600 })
        const channel = await runc.runDetached(spec.id, p.dir, await seccompProgram(), createInitChannel, call)
        inits.set(spec.id, channel)
        // The init loads the seccomp filter before it serves anyone, or exits: no sandbox runs unfiltered.
        await channel.ready.catch(() => {
          throw new SandstormError('internal', "the sandbox's init did not start: it could not load the seccomp filter")
        })
        // What the config holds, known here without a read of it on the first command's path.
        envCache.set(spec.id, sandboxVars(spec.env))
        log.info({ sandboxId: spec.id }, 'sandbox started')
        return { id: spec.id, status: 'running', pid: null }
      } catch (err) {
        await backend.destroy(spec.id).catch((e: unknown) => log.error({ sandboxId: spec.id, err: e }, 'cleanup after failed create failed'))
        throw err
      }
    },

    async destroy(id: string): Promise<void> {
      const p = paths(id)
      envCache.delete(id)
      inits.get(id)?.close()
      inits.delete(id)
      paused.delete(id)
      // One runc run, not kill + state polls + delete: with the init reaped first, `runc delete`
      // only removes its state and cgroups (see killInit for why runc is not left to kill it).
      const init = runc.initProcess(id)
      const dead = !init || (await killInit(init, async () => (killFrozenSandbox(id), await thawSandbox(id))))
      if (!dead) log.warn({ sandboxId: id, pid: init.pid }, 'sandbox init outlived SIGKILL; runc delete --force kills it again')
      await removeExecCgroups(id)
      // With its init dead, all that runc delete would do is remove the cgroups and runc's state;
      // it runs only when something is left (or runc never started the container).
      const forgotten = init !== null && dead && (await removeSandboxCgroups(id))
      // The root overlay went with the container's mount namespace; a sandbox that an earlier
      // version started had it mounted on the host.
      await Promise.all([forgotten ? runc.forgetState(id) : runc.deleteForce(id), unmount(p.rootfs)])
      await rm(p.dir, { recursive: true, force: true })
      log.info({ sandboxId: id }, 'sandbox destroyed')
    },

    async list(call?: CallOptions): Promise<RuntimeSandbox[]> {
      await ready
      const all: RuncContainer[] = await runc.list(call)
      return all.map((c) => ({
        id: c.id,
        status: c.status === 'running' ? 'running' : c.status === 'paused' ? 'paused' : 'stopped',
        pid: c.pid || null,
      }))
    },

    async pause(id, call) {
      await runc.pause(checked(id), call)
      paused.add(id)
    },
    freeze: (id) => freezeSandbox(checked(id)),
    renew(id, rootfs, env, snapshotId) {
      const run = renew(id, rootfs, env, snapshotId).finally(() => renewing.get(id) === run && renewing.delete(id))
      renewing.set(id, run)
      return run
    },
    thaw: (id) => thawSandbox(checked(id)),
    async resume(id, call) {
      await runc.resume(checked(id), call)
      paused.delete(id)
    },
    stats: async (id) => sandboxUsage(checked(id)),
    setCpuWeight: (id, weight) => setSandboxCpuWeight(checked(id), weight),

    async exec(id: string, spec: ExecSpec, sink: OutputSink, call: CallOptions = {}): Promise<RuntimeProcess> {
      const env = Object.entries(spec.env).map(([k, v]) => `${k}=${v}`)
      const home = spec.env.HOME ?? (spec.uid === 0 ? '/root' : '/')
      // Checked before anything starts: a bad size is the caller's error, not the sandbox's.
      const pty = spec.pty ? checkTerminalSize(spec.pty) : undefined
      const child = await start(id, spec.argv, { signal: call.signal }, { uid: spec.uid, gid: spec.gid, home }, env, spec.cwd, spec.timeoutMs, pty)
      child.stdout.on('data', (c: Buffer) => sink.onStdout(c))
      child.stderr.on('data', (c: Buffer) => sink.onStderr(c))
      return child
    },

    async *readFile(id: string, path: string, call: CallOptions = {}): AsyncIterable<Uint8Array> {
      const child = await start(id, scriptArgv(fsScripts.read, [path]), call)
      child.closeStdin()
      const err = readHead(child.stderr)
      let done = false
      try {
        for await (const chunk of child.stdout) yield chunk as Uint8Array
        done = true
      } finally {
        if (!done) await child.kill()
      }
      const result = await child.result
      if (result.exitCode !== 0) throw fsError('read', path, await err)
    },

    async writeFile(id: string, path: string, data: AsyncIterable<Uint8Array>, call: CallOptions = {}): Promise<void> {
      // Written under a temporary name beside the target and renamed over it once complete, so
      // that a refused or broken upload leaves neither a partial file nor a clobbered old one.
      const temp = posix.join(posix.dirname(path), `.sandstorm-upload-${randomBytes(6).toString('hex')}`)
      const child = await start(id, scriptArgv(fsScripts.write, [path, temp]), call)
      child.stdout.resume()
      const err = readHead(child.stderr)
      let failure: unknown
      try {
        for await (const chunk of data) await child.writeStdin(chunk)
        child.closeStdin()
      } catch (e) {
        await child.kill()
        failure = e instanceof SandstormError && e.code === 'failed_precondition' ? fsError('write', path, await err) : e
      }
      const result = await child.result
      if (failure === undefined && result.exitCode !== 0) failure = fsError('write', path, await err)
      if (failure !== undefined) {
        // Not under the caller's signal: its abort may be what ended the upload.
        await runScript(id, 'remove', temp, fsScripts.removeTemp, [temp]).catch(() => undefined)
        throw failure
      }
    },

    async listDir(id: string, path: string, call?: CallOptions): Promise<EntryInfo[]> {
      return parseListing(await runScript(id, 'list', path, fsScripts.list, [path], call), path)
    },
    async stat(id: string, path: string, call?: CallOptions): Promise<EntryInfo> {
      return parseStat(await runScript(id, 'stat', path, fsScripts.stat, [path], call), path)
    },
    async mkdir(id: string, path: string, parents: boolean, call?: CallOptions): Promise<void> {
      await runScript(id, 'mkdir', path, parents ? fsScripts.mkdirParents : fsScripts.mkdir, [path], call)
    },
    async remove(id: string, path: string, recursive: boolean, call?: CallOptions): Promise<void> {
      await runScript(id, 'remove', path, recursive ? fsScripts.removeRecursive : fsScripts.remove, [path], call)
    },
    async rename(id: string, from: string, to: string, call?: CallOptions): Promise<void> {
      await runScript(id, 'rename', from, fsScripts.rename, [from, to], call)
    },
    async resolveUser(id: string, user: string, call?: CallOptions) {
      if (user === 'root') return { uid: 0, gid: 0, home: '/root' }
      try {
        const [uid, gid, home] = (await runScript(id, 'resolve user', user, fsScripts.resolveUser, [user], call)).split('\n')
        return { uid: Number(uid), gid: Number(gid), home: home || '/' }
      } catch {
        throw new SandstormError('invalid_argument', `user "${user}" does not exist in the sandbox (expected a name from its /etc/passwd, or a uid)`)
      }
    },
  }
  return backend
}
