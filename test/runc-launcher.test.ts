/**
 * The resident launcher that starts `runc run` in the agent's place (native/runc-launcher.c), run
 * for real with ordinary programs in runc's place: what the program gets on its fds, how its end
 * is reported, abort and timeout, many runs at once, and a launcher that dies or is closed.
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { hostHelpers } from '../src/runtime/runc/layout.js'
import { createRuncCli } from '../src/runtime/runc/runc-cli.js'
import { createRuncLauncher, type LaunchRequest } from '../src/runtime/runc/runc-launcher.js'
import { isAlive, SandstormError } from '../src/shared/index.js'
import { until } from './helpers/until.js'

const isCode = (code: string) => (e: unknown) => e instanceof SandstormError && e.code === code

/** The launchers this process started, by their parent. */
function launcherPids(): number[] {
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === process.pid && readlinkSync(`/proc/${entry}/exe`) === hostHelpers.runcLauncher) pids.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return pids
}

describe('the runc launcher', () => {
  let dir: string
  let server: Server
  const sockets: Socket[] = []
  let req: (program: string, ...args: string[]) => LaunchRequest

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-launcher-'))
    await writeFile(join(dir, 'filter'), 'the filter bytes')
    server = createServer((s) => void sockets.push(s))
    await new Promise<void>((resolve) => server.listen(join(dir, 'init.sock'), resolve))
    req = (program, ...args) => ({ socketPath: join(dir, 'init.sock'), filterPath: join(dir, 'filter'), logPath: join(dir, 'start.log'), program, args })
  })

  after(async () => {
    for (const s of sockets) s.destroy()
    server.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('gives the program the socket on fd 3, the file on fd 4, stderr in the log, /dev/null and nothing else', async () => {
    const launcher = createRuncLauncher(hostHelpers.runcLauncher)
    const abort = new AbortController()
    const heard = new Promise<string>((resolve) => server.once('connection', (s: Socket) => s.once('data', (d) => resolve(String(d)))))
    // The shell says its pid and what fd 4 holds on fd 3, then becomes a sleep with the same fds.
    const run = launcher.run(req('/bin/sh', '-c', 'echo "$$ $(cat <&4)" >&3; echo to-the-log >&2; exec sleep 60'), { signal: abort.signal })
    const [pid, filter] = (await heard).trim().split(/ (.*)/)
    assert.equal(filter, 'the filter bytes')
    // Its fds once the shell has become the sleep (before, the shell may hold one of its own for a
    // moment), and the sleep has started: just after the exec, the dynamic loader holds each library
    // it maps on the next free fd for a moment. An fd the program was given stays, and fails the wait.
    await until('the shell to exec sleep', async () => readFileSync(`/proc/${pid}/cmdline`, 'utf8') === 'sleep\x0060\x00')
    const fds = await until('the sleep to hold fds 0-4 only', async () => {
      const open = Object.fromEntries(readdirSync(`/proc/${pid}/fd`).map((fd) => [fd, readlinkSync(`/proc/${pid}/fd/${fd}`)]))
      assert.deepEqual(Object.keys(open).sort(), ['0', '1', '2', '3', '4'], JSON.stringify(open))
      return open
    }, 5_000)
    assert.equal(fds['0'], '/dev/null')
    assert.equal(fds['1'], '/dev/null')
    assert.equal(fds['2'], join(dir, 'start.log'))
    assert.match(fds['3']!, /^socket:/)
    assert.equal(fds['4'], join(dir, 'filter'))
    assert.equal(readFileSync(join(dir, 'start.log'), 'utf8'), 'to-the-log\n')
    // Its signals are the default ones: the launcher's ignored SIGPIPE is not inherited.
    const ignored = BigInt(`0x${/^SigIgn:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]}`)
    assert.equal(ignored & (1n << 12n), 0n)
    abort.abort()
    await assert.rejects(run, (e: unknown) => isCode('canceled')(e) && (e as Error).message === '/bin/sh was canceled')
    assert.equal(isAlive(Number(pid)), false)
    launcher.close()
  })

  it('reports each exit: its code, 128 + a signal, and 127 with the reason in the log when the program cannot start', async () => {
    const launcher = createRuncLauncher(hostHelpers.runcLauncher)
    assert.equal(await launcher.run(req('/bin/sh', '-c', 'exit 7')), 7)
    assert.equal(await launcher.run(req('/bin/sh', '-c', 'kill -TERM $$')), 128 + 15)
    assert.equal(await launcher.run(req('/no/such/program')), 127)
    assert.match(readFileSync(join(dir, 'start.log'), 'utf8'), /^runc launcher: exec \/no\/such\/program: No such file or directory\n$/)
    assert.equal(await launcher.run({ ...req('/bin/true'), socketPath: join(dir, 'nobody-listens.sock') }), 127)
    assert.match(readFileSync(join(dir, 'start.log'), 'utf8'), /^runc launcher: connect .*nobody-listens\.sock: No such file or directory\n$/)
    launcher.close()
  })

  it('ends a run that outlives its timeout, and says deadline_exceeded', async () => {
    const launcher = createRuncLauncher(hostHelpers.runcLauncher)
    await assert.rejects(launcher.run(req('/bin/sleep', '60'), { timeoutMs: 200 }), (e: unknown) => isCode('deadline_exceeded')(e) && (e as Error).message === '/bin/sleep took longer than 200 ms')
    launcher.close()
  })

  it('runs many at once, each answered with its own end', async () => {
    const earlier = new Set(launcherPids())
    const launcher = createRuncLauncher(hostHelpers.runcLauncher)
    const codes = await Promise.all(Array.from({ length: 24 }, (_, i) => launcher.run(req('/bin/sh', '-c', `sleep 0.$((${i} % 3)); exit ${i}`))))
    assert.deepEqual(codes, Array.from({ length: 24 }, (_, i) => i))
    // One launcher served them all.
    assert.equal(launcherPids().filter((pid) => !earlier.has(pid)).length, 1)
    launcher.close()
  })

  it('fails the runs of a launcher that died, and starts a new one for the next; a closed one exits', async () => {
    const earlier = new Set(launcherPids())
    const launcher = createRuncLauncher(hostHelpers.runcLauncher)
    const heard = new Promise<string>((resolve) => server.once('connection', (s: Socket) => s.once('data', (d) => resolve(String(d)))))
    const running = launcher.run(req('/bin/sh', '-c', 'echo $$ >&3; exec sleep 60'))
    const orphan = Number((await heard).trim())
    const [first, ...others] = launcherPids().filter((pid) => !earlier.has(pid))
    assert.ok(first && others.length === 0)
    process.kill(first, 'SIGKILL')
    await assert.rejects(running, (e: unknown) => isCode('internal')(e) && /the runc launcher exited \(SIGKILL\)/.test((e as Error).message))
    // What it had started goes on, as a child of a dead agent would: this test ends it.
    process.kill(orphan, 'SIGKILL')
    assert.equal(await launcher.run(req('/bin/sh', '-c', 'exit 3')), 3)
    const [second, ...more] = launcherPids().filter((pid) => !earlier.has(pid) && pid !== first)
    assert.ok(second && more.length === 0)
    launcher.close()
    await until('the closed launcher to exit', async () => !isAlive(second))
  })

  it('starts a detached container through it from a bundle of any path length, the channel handed over and nothing left', async () => {
    // A stand-in for runc: it sends what fd 4 holds and its arguments over fd 3, or fails as runc would.
    const fakeRunc = join(dir, 'fake-runc')
    await writeFile(fakeRunc, '#!/bin/sh\nif [ -e "$0.fail" ]; then echo "container_linux.go: bad config" >&2; exit 1; fi\n{ cat <&4; echo " $*"; } >&3\n')
    await chmod(fakeRunc, 0o755)
    const runc = createRuncCli({ binary: fakeRunc, stateRoot: join(dir, 'state') })
    const channel = (socket: Socket) => {
      let text = ''
      const heard = new Promise<string>((resolve) => socket.on('data', (d) => (text += String(d))).once('end', () => resolve(text)))
      return { heard, closed: false, close() { this.closed = true; socket.destroy() } }
    }
    const privateDirs = () => new Set(readdirSync(tmpdir()).filter((n) => n.startsWith('sandstorm-runc-')))
    const earlier = privateDirs()
    // The second bundle's init.sock would be past a socket path's 107 bytes.
    for (const bundle of [join(dir, 'b1'), join(dir, 'long-'.repeat(20), 'b2')]) {
      await mkdir(bundle, { recursive: true })
      const opened = await runc.runDetached('sb-x', bundle, Buffer.from('FILTER'), channel)
      assert.equal(await opened.heard, `FILTER --root ${join(dir, 'state')} run --detach --preserve-fds 2 --bundle ${bundle} sb-x\n`)
      opened.close()
      assert.deepEqual(readdirSync(bundle), [])
    }
    // The launcher's children have its environment, not this test's: the failure is a file.
    await writeFile(`${fakeRunc}.fail`, '')
    try {
      let made: ReturnType<typeof channel> | undefined
      await assert.rejects(
        runc.runDetached('sb-y', join(dir, 'b1'), Buffer.from('FILTER'), (s) => (made = channel(s))),
        (e: unknown) => isCode('internal')(e) && (e as Error).message === 'starting the sandbox failed: container_linux.go: bad config',
      )
      // The launcher's child connected before runc ran: the agent's end, if it took it, is closed again.
      assert.ok(made === undefined || made.closed)
      assert.deepEqual(readdirSync(join(dir, 'b1')), [])
    } finally {
      await rm(`${fakeRunc}.fail`)
    }
    // The long bundle's socket was in a private dir of the CLI's, which its close removes.
    const made = [...privateDirs()].filter((n) => !earlier.has(n))
    assert.equal(made.length, 1)
    runc.close()
    assert.equal(privateDirs().has(made[0]!), false)
  })
})

