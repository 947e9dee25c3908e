/**
 * qemu sandboxes through the real HTTP server: create with `runtime: 'qemu'`, exec and files, a
 * snapshot whose fork still runs a process started before it, a golden qemu template cloned on its
 * config and booted cold on another, refusals while something stands on a machine, and a destroy
 * that leaves nothing. TCG boots take seconds: few sandboxes, shared between the cases.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink } from 'node:fs/promises'
import { release, tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { execa } from 'execa'
import { createLocalAgent, type AgentApi } from '../src/agent/index.js'
import { startServer, type RunningServer } from '../src/server/index.js'
import { createLogger, silentLogger } from '../src/shared/index.js'
import { buildGoldenTemplate, ConflictError, deleteSnapshot, InvalidArgumentError, Sandbox, type SandboxCreateOptions, type SandboxInfo } from '@sandstorm/sdk'
import { linkSharedGuest } from './helpers/qemu-guest.js'
import { skipReason, templatesDir as sharedTemplatesDir } from './helpers/stack.js'


function qemuSkipReason(): string | false {
  const reason = skipReason()
  if (reason) return reason
  if (!existsSync('/usr/bin/qemu-system-x86_64')) return 'qemu-system-x86 is not installed: run scripts/setup.sh'
  return false
}

const skip = qemuSkipReason()
const memoryMiB = 256
const cpus = 1

describe('qemu sandboxes through the API', { skip, timeout: 10 * 60_000 }, () => {
  let dataDir: string
  let agent: AgentApi
  let server: RunningServer
  let conn: { apiUrl: string; apiKey: string; requestTimeoutMs: number }
  let origin: Sandbox
  let fork: Sandbox
  let snapshotId: string
  const timings: Record<string, number> = {}

  const sh = async (sb: Sandbox, cmd: string): Promise<string> => {
    const r = await sb.commands.run(cmd, { ...conn })
    assert.equal(r.exitCode, 0, `${cmd}: ${r.stderr}`)
    return r.stdout.trim()
  }
  /** Creates through the SDK and times the call (create to running, as a client sees it). */
  const timedCreate = async (name: string, template: string, options: SandboxCreateOptions = {}): Promise<Sandbox> => {
    const t0 = performance.now()
    const sb = await Sandbox.create(template, { ...conn, ...options })
    timings[name] = Math.round(performance.now() - t0)
    return sb
  }
  // The loop's own name, its argv[0] (set by bash's `exec -a`: dash's exec has no -a), is how it
  // is found in /proc of a fork; the listing shell's own command line holds the name too, but not
  // first. A loop just started with `&` may not have exec'd yet: it is looked for for up to 20 s.
  const loopAlive = (sb: Sandbox) =>
    sh(sb, 'for i in $(seq 200); do for p in /proc/[0-9]*; do grep -qs "^sandstorm-loop" $p/cmdline && { echo alive; exit 0; }; done; sleep 0.1; done; echo gone')

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'sandstorm-qemu-'))
    // A template dir of this test's own (golden versions made here stay here), over the shared debian.
    const templates = join(dataDir, 'templates')
    await mkdir(join(templates, 'debian'), { recursive: true })
    const version = await readlink(join(sharedTemplatesDir, 'debian', 'current'))
    await symlink(join(sharedTemplatesDir, 'debian', version), join(templates, 'debian', version))
    await symlink(version, join(templates, 'debian', 'current'))
    // The guest is cached per template root path: the shared one serves this path too.
    await linkSharedGuest(dataDir, join(sharedTemplatesDir, 'debian', version, 'rootfs'), join(templates, 'debian', version, 'rootfs'))
    const logger = process.env.SANDSTORM_TEST_LOGS ? createLogger({ level: 'debug' }) : silentLogger()
    agent = await createLocalAgent({ dataDir, templatesDir: templates, logger })
    server = await startServer({ dataDir, agent, port: 0, logger })
    // A cold qemu boot under TCG on a loaded 2-core host can take longer than the SDK's 60 s request deadline.
    conn = { apiUrl: server.url, apiKey: server.apiKey, requestTimeoutMs: 300_000 }
  })

  after(async () => {
    for (const s of (await agent?.list()) ?? []) await agent.destroy(s.id).catch(() => undefined)
    await server?.close()
    await agent?.close()
    if (dataDir) await rm(dataDir, { recursive: true, force: true })
    if (Object.keys(timings).length > 0) console.log(`# qemu create latency through the API (ms): ${JSON.stringify(timings)}`)
  })

  it('lists qemu among the runtimes and refuses an unknown one, naming the choices', async () => {
    assert.ok(agent.info().runtimes.includes('qemu'))
    await assert.rejects(
      Sandbox.create('debian', { ...conn, runtime: 'xen' as 'qemu' }),
      (err: unknown) => err instanceof InvalidArgumentError && /runtime: expected one of "runc", "qemu", got "xen"/.test(err.message),
    )
  })

  it('creates a qemu sandbox with its own kernel, runs commands and moves files', async () => {
    origin = await timedCreate('cold', 'debian', { runtime: 'qemu', memoryMiB, cpus, diskMiB: 512 })
    const info = await origin.getInfo({ ...conn })
    assert.equal(info.runtime, 'qemu')
    assert.equal(info.diskMiB, 512)
    assert.equal((await Sandbox.list({ ...conn })).find((s) => s.id === origin.sandboxId)?.runtime, 'qemu')
    assert.notEqual(await sh(origin, 'uname -r'), release(), 'the guest runs a kernel of its own')
    await origin.files.write('/root/hello.txt', 'hello from the host', { ...conn })
    assert.equal(await origin.files.read('/root/hello.txt', { ...conn }), 'hello from the host')
    assert.equal(await sh(origin, 'cat /root/hello.txt'), 'hello from the host')
  })

  it('a qemu sandbox\'s disk is its quota: a write past it fails inside, and the host holds at most that', async () => {
    const sizeMiB = Number(await sh(origin, "df -Pm / | awk 'NR==2 {print $2}'"))
    assert.ok(sizeMiB > 400 && sizeMiB <= 512, `df says the root holds ${sizeMiB} MiB`)
    const full = await origin.commands.run('dd if=/dev/zero of=/root/big bs=1M 2>&1; echo "exit $?"; sync', { ...conn, timeoutMs: 300_000 })
    assert.match(full.stdout, /No space left on device[\s\S]*exit 1/)
    const m = await origin.getUsage({ ...conn })
    assert.equal(m.diskLimitBytes, 512 * 2 ** 20)
    // The overlay holds what the guest wrote (and qcow2's tables), never more than the disk.
    assert.ok(m.diskUsedBytes > 100 * 2 ** 20 && m.diskUsedBytes <= 520 * 2 ** 20, `the host holds ${m.diskUsedBytes} bytes of the guest's disk`)
    await sh(origin, 'rm /root/big && sync')
    // Too small for the template's root: a 400 naming the field, and nothing made.
    await assert.rejects(
      Sandbox.create('debian', { ...conn, runtime: 'qemu', memoryMiB, cpus, diskMiB: 64 }),
      (err: unknown) => err instanceof InvalidArgumentError && /diskMiB: a qemu sandbox's disk holds its whole root, which needs at least \d+ MiB/.test(err.message),
    )
  })

  it('runs its QEMU under a seccomp filter', async () => {
    const pid = (await readFile(join(dataDir, 'qemu', 'vms', origin.sandboxId, 'qemu.pid'), 'utf8')).trim()
    assert.match(await readFile(`/proc/${pid}/status`, 'utf8'), /^Seccomp:\s+2$/m)
  })

  it("holds a guest's console output to a ring in QEMU's memory: its VM dir does not grow with it", async () => {
    const vmDir = join(dataDir, 'qemu', 'vms', origin.sandboxId)
    const sizes = async (): Promise<Record<string, number>> => {
      const out: Record<string, number> = {}
      for (const name of await readdir(vmDir)) if (!/\.(qcow2|sock)$/.test(name)) out[name] = (await stat(join(vmDir, name))).size
      return out
    }
    const before = await sizes()
    // && : a failed write (its exit status checked by sh) would prove nothing about the size.
    assert.equal(await sh(origin, 'head -c 1000000 /dev/zero | tr "\\0" x > /dev/ttyS0 && echo done'), 'done')
    const after = await sizes()
    for (const [name, size] of Object.entries(after)) assert.ok(size - (before[name] ?? 0) < 100_000, `${name} grew by ${size - (before[name] ?? 0)} bytes with the console's output`)
  })

  it('forks a snapshot whose process, started before it, still runs in the fork', async () => {
    await sh(origin, 'printf "while :; do echo tick >> /root/ticks; sleep 0.2; done\\n" > /root/loop.sh')
    await sh(origin, 'setsid bash -c "exec -a sandstorm-loop sh /root/loop.sh" </dev/null >/dev/null 2>&1 &')
    assert.equal(await loopAlive(origin), 'alive')
    const snap = await origin.snapshot({ ...conn, label: 'with a loop' })
    snapshotId = snap.id
    assert.equal((snap as typeof snap & { runtime?: string }).runtime, 'qemu')
    assert.equal(snap.memoryMiB, memoryMiB)
    const t0 = performance.now()
    ;[fork] = await Sandbox.fork(snapshotId, { ...conn })
    timings.fork = Math.round(performance.now() - t0)
    assert.equal((await fork!.getInfo({ ...conn })).runtime, 'qemu')
    assert.equal(await loopAlive(fork!), 'alive', 'the loop started before the snapshot runs in the fork')
    assert.equal(await sh(fork!, 'cat /root/hello.txt'), 'hello from the host')
    // The two diverge from here.
    await sh(fork!, 'echo fork-only > /root/fork.txt')
    assert.equal(await sh(origin, 'test -e /root/fork.txt && echo present || echo absent'), 'absent')
  })

  it('restores a qemu sandbox to the snapshot, keeping its id', async () => {
    await sh(origin, 'echo after > /root/after.txt')
    await origin.restore(snapshotId, { ...conn })
    assert.equal(await sh(origin, 'test -e /root/after.txt && echo present || echo absent'), 'absent')
    assert.equal(await loopAlive(origin), 'alive')
    assert.equal((await origin.getInfo({ ...conn })).runtime, 'qemu')
  })

  it('adopts running qemu sandboxes after the agent and server restart', async () => {
    await server.close()
    await agent.close()
    const logger = process.env.SANDSTORM_TEST_LOGS ? createLogger({ level: 'debug' }) : silentLogger()
    agent = await createLocalAgent({ dataDir, templatesDir: join(dataDir, 'templates'), logger })
    server = await startServer({ dataDir, agent, port: 0, logger })
    // A cold qemu boot under TCG on a loaded 2-core host can take longer than the SDK's 60 s request deadline.
    conn = { apiUrl: server.url, apiKey: server.apiKey, requestTimeoutMs: 300_000 }
    origin = await Sandbox.connect(origin.sandboxId, { ...conn })
    fork = await Sandbox.connect(fork.sandboxId, { ...conn })
    assert.equal((await origin.getInfo({ ...conn })).runtime, 'qemu')
    assert.equal(await sh(fork, 'cat /root/fork.txt'), 'fork-only')
  })

  it('refuses to delete a snapshot a sandbox stands on', async () => {
    await assert.rejects(deleteSnapshot(snapshotId, { ...conn }), (err: unknown) => err instanceof ConflictError && err.message.includes(fork.sandboxId))
  })

  it('builds a golden qemu template whose clones start on its config, and boots cold on another', async () => {
    const built = await buildGoldenTemplate(
      'qgold',
      { from: 'debian', runtime: 'qemu', memoryMiB, cpus, steps: ['echo built > /etc/golden-marker', 'setsid bash -c "exec -a sandstorm-loop sh -c \'while :; do sleep 1; done\'" </dev/null >/dev/null 2>&1 &'] },
      { ...conn },
    )
    assert.equal(built.template.defaults.memoryMiB, memoryMiB)
    const golden = await timedCreate('golden', 'qgold')
    assert.equal(golden.start.source, 'golden')
    assert.equal((await golden.getInfo({ ...conn })).runtime, 'qemu')
    assert.equal(await sh(golden, 'cat /etc/golden-marker'), 'built')
    assert.equal(await loopAlive(golden), 'alive', 'the build\'s process runs in the clone')
    const cold = await timedCreate('golden-mismatch-cold', 'qgold', { memoryMiB: memoryMiB + 128 })
    assert.equal(cold.start.source, 'cold')
    assert.match(cold.start.sourceReason ?? '', /saved with 256 MiB, 1 cpus and a \d+ MiB disk, the create asked for 384 MiB, 1 cpus and a \d+ MiB disk/)
    await assert.rejects(deleteSnapshot(built.snapshotId, { ...conn }), (err: unknown) => err instanceof ConflictError && /qgold/.test(err.message))
    await assert.rejects(Sandbox.create('qgold', { ...conn, runtime: 'runc' }), (err: unknown) => err instanceof ConflictError && /saved qemu machine/.test(err.message))
  })

  it('destroys every qemu sandbox and snapshot, leaving nothing behind', async () => {
    const all: SandboxInfo[] = await Sandbox.list({ ...conn })
    for (const s of all) assert.equal(await Sandbox.kill(s.id, { ...conn }), true)
    assert.deepEqual(await readdir(join(dataDir, 'qemu', 'vms')).catch(() => []), [])
    for (const s of all) {
      const qemu = await execa('pgrep', ['-f', `qemu-system.*${s.id}`], { reject: false })
      assert.equal(qemu.stdout.trim(), '', `no qemu process of ${s.id} is left`)
      const shm = await readdir('/dev/shm', { recursive: true }).catch(() => [] as string[])
      assert.deepEqual(shm.filter((f) => f.includes(s.id)), [], `no guest memory file of ${s.id} is left`)
      const cgroups = ['memory', 'cpu', 'pids'].map((c) => `/sys/fs/cgroup/${c}/sandstorm/${s.id}`).filter((p) => existsSync(p))
      assert.deepEqual(cgroups, [], `no cgroup of ${s.id} is left`)
    }
    await deleteSnapshot(snapshotId, { ...conn })
    assert.equal(existsSync(join(dataDir, 'machines', snapshotId)), false)
    for (const s of await agent.list()) assert.fail(`sandbox ${s.id} is left on the agent`)
  })
})
