/**
 * The sandbox's init (native/sandbox-init.c) as the runc backend drives it: commands over its
 * channel, their whole trees killed, large streams both ways, and a later agent attaching to the
 * init of a sandbox that an earlier one started.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createRuncBackend, runcHostHelpers } from '../src/runtime/index.js'
import { attachInit } from '../src/runtime/runc/init-attach.js'
import { createInitChannel } from '../src/runtime/runc/init-channel.js'
import type { ExecSpec, RuntimeBackend, RuntimeProcess, SandboxSpec } from '../src/runtime/index.js'
import { SandstormError } from '../src/shared/index.js'
import { createTemplateStore } from '../src/templates/index.js'
import { leftoversOf } from './helpers/leftovers.js'
import { until } from './helpers/until.js'
import { skipReason, templatesDir } from './helpers/stack.js'

const skip = skipReason() ?? false

describe("the runc sandbox's init", { skip }, () => {
  let dataDir: string
  let backend: RuntimeBackend
  let spec: SandboxSpec
  const id = `sb-${randomBytes(8).toString('hex')}`
  const layout = () => ({ stateRoot: join(dataDir, 'runc'), sandboxesDir: join(dataDir, 'sandboxes') })

  async function run(be: RuntimeBackend, script: string, extra: Partial<ExecSpec> = {}, stdin?: Uint8Array) {
    const out: Buffer[] = []
    const err: Buffer[] = []
    const proc = await be.exec(id, { argv: ['/bin/sh', '-c', script], env: {}, cwd: '/', uid: 0, gid: 0, ...extra }, { onStdout: (c) => out.push(Buffer.from(c)), onStderr: (c) => err.push(Buffer.from(c)) })
    if (stdin) await proc.writeStdin(stdin)
    proc.closeStdin()
    const result = await proc.result
    return { result, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }
  }

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'sandstorm-runc-init-'))
    backend = createRuncBackend(layout())
    const template = await createTemplateStore({ dir: templatesDir }).resolve('debian')
    spec = { id, rootfs: template.rootfs, memoryMiB: 256, cpus: 1, pidsMax: 256, env: {}, hostname: 'sandbox', network: { mode: 'none' } }
    await backend.create(spec)
  })

  after(async () => {
    await backend.destroy(id).catch(() => undefined)
    assert.deepEqual(await leftoversOf(dataDir, id), [])
    await rm(dataDir, { recursive: true, force: true })
  })

  it('a timeout also ends a daemon that left the command\'s session', async () => {
    // setsid and a double fork: the daemon is in no process group or session of the command.
    const { result } = await run(backend, "setsid sh -c '(sleep 60; true) &' ; sleep 30", { timeoutMs: 500 })
    assert.equal(result.timedOut, true)
    assert.equal(result.exitCode, 137)
    // A killed command ends once its whole tree is reaped: nothing of it is left by then.
    const left = await run(backend, 'pgrep -x -f "sleep 60" >/dev/null && echo alive; echo done')
    assert.equal(left.stdout.toString(), 'done\n')
  })

  it('a kill after the command itself ended still ends what it left running', async () => {
    const proc = await backend.exec(id, { argv: ['/bin/sh', '-c', 'sleep 61 >/dev/null 2>&1 & echo $!'], env: {}, cwd: '/', uid: 0, gid: 0 }, { onStdout: () => undefined, onStderr: () => undefined })
    proc.closeStdin()
    assert.equal((await proc.result).exitCode, 0)
    const alive = async () => (await run(backend, 'pgrep -x -f "sleep 61" >/dev/null && echo alive; true')).stdout.toString()
    // The command's end can come before its child has become the sleep.
    await until('the left-over sleep to run', async () => (await alive()) === 'alive\n')
    await proc.kill('SIGKILL')
    await until('the left-over sleep to be killed', async () => (await alive()) === '')
  })

  it('a command that kills its own keeper ends with all it started: nothing of it runs on, and its result says it was killed', async () => {
    // Root in the sandbox may SIGKILL the command's keeper (its parent): what the keeper kept
    // (a background sleep, a daemon in a session of its own) went to the init, out of the tree
    // that a kill or a timeout reaches, and ran on for good. Every process of the command (its
    // shell too) has "sleep 100N" in its command line, whether it has run its exec yet or not.
    const script = "sleep 1000 & setsid sh -c 'sleep 1001 & sleep 1002' & kill -9 $PPID; sleep 1003"
    const { result } = await run(backend, script)
    assert.equal(result.exitCode, 137)
    assert.equal(result.signal, 'SIGKILL')
    assert.equal(result.timedOut, false)
    const left = await run(backend, 'pgrep -f "sleep 100[0-3]"; true')
    assert.equal(left.stdout.toString(), '', 'no process of the command runs on')
  })

  it('a command that stops its own keeper still ends when it is killed, with all it started', async () => {
    // A stopped keeper reaps nothing and reports no status: the kill's result never came.
    let said = ''
    let stopped!: () => void
    const keeperStopped = new Promise<void>((resolve) => (stopped = resolve))
    const proc = await backend.exec(id, { argv: ['/bin/sh', '-c', 'sleep 1004 & kill -STOP $PPID; echo stopped; sleep 1005'], env: {}, cwd: '/', uid: 0, gid: 0 }, {
      onStdout: (c) => ((said += Buffer.from(c).toString()), said.includes('stopped') && stopped()),
      onStderr: () => undefined,
    })
    proc.closeStdin()
    await keeperStopped
    await proc.kill('SIGKILL')
    const result = await Promise.race([proc.result, new Promise<'none'>((resolve) => setTimeout(() => resolve('none'), 30_000).unref())])
    assert.notEqual(result, 'none', 'no result came of the killed command')
    assert.equal(result !== 'none' && result.signal, 'SIGKILL')
    const left = await run(backend, 'pgrep -f "sleep 100[45]"; ps -eo stat= | grep -c "^T"; true')
    assert.equal(left.stdout.toString(), '0\n', 'nothing of the command is left, stopped or running')
  })

  it('a signal other than SIGKILL reaches every process of the command', async () => {
    const out: string[] = []
    let up!: () => void
    const started = new Promise<void>((resolve) => (up = resolve))
    const proc = await backend.exec(
      id,
      { argv: ['/bin/sh', '-c', "trap 'echo parent-term; exit 3' TERM; (trap 'echo child-term; exit 0' TERM; echo up; while :; do sleep 0.05; done) & wait"], env: {}, cwd: '/', uid: 0, gid: 0 },
      { onStdout: (c) => (out.push(Buffer.from(c).toString()), up()), onStderr: () => undefined },
    )
    // "up" comes once both traps are set: the parent's before it forks, the child's before it prints.
    await started
    await proc.kill('SIGTERM')
    const result = await proc.result
    assert.equal(result.exitCode, 3)
    assert.equal(result.signal, 'SIGTERM')
    const text = out.join('')
    assert.match(text, /parent-term/)
    assert.match(text, /child-term/)
  })

  it('streams 3 MiB into stdin and 24 MiB out, whole and in order', async () => {
    const input = randomBytes(3 << 20)
    const counted = await run(backend, 'md5sum | cut -d" " -f1', {}, input)
    const { createHash } = await import('node:crypto')
    assert.equal(counted.stdout.toString().trim(), createHash('md5').update(input).digest('hex'))
    const big = await run(backend, 'head -c 25165824 /dev/zero | tr "\\0" x')
    assert.equal(big.result.exitCode, 0)
    assert.equal(big.stdout.length, 24 << 20)
    assert.ok(big.stdout.every((b) => b === 0x78))
  })

  it('output held back by its reader comes before the exit, however long the command has ended', async () => {
    // A channel of the test's own, to pause a command's output as the agent does when its reader
    // falls behind. The pause is read before the line on stdin that the command waits for, so the
    // init has not read a byte of its output when it pauses. The exit must then wait for the
    // output: reported 200 ms after the command ended (the grace for children left holding its
    // pipes), it came without the output, which was then dropped.
    const state = JSON.parse(await readFile(join(layout().stateRoot, id, 'state.json'), 'utf8')) as { init_process_pid: number; init_process_start: number }
    const channel = await attachInit({ pid: state.init_process_pid, startTicks: state.init_process_start }, `sandstorm-init-${id}`, createInitChannel)
    try {
      await channel.ready
      const heard: string[] = []
      let ended!: (status: number) => void
      const exit = new Promise<number>((resolve) => (ended = resolve))
      const request = { argv: ['/bin/sh', '-c', 'read line; echo "$line"'], env: [], cwd: '/', uid: 0, gid: 0 }
      const command = channel.start(request, {
        started: () => undefined,
        failed: (failure) => heard.push(`failed: ${failure.text}`),
        stdout: (data) => heard.push(`stdout ${data.toString()}`),
        stderr: (data) => heard.push(`stderr ${data.toString()}`),
        ack: () => undefined,
        stdinGone: () => undefined,
        exit: (status) => {
          heard.push(`exit ${status}`)
          ended(status)
        },
      })
      channel.pause(command)
      channel.stdin(command, Buffer.from('held back\n'))
      channel.closeStdin(command)
      // Well past the command's end and its grace.
      await new Promise((resolve) => setTimeout(resolve, 1000))
      assert.deepEqual(heard, [], 'nothing, not even the exit, while the output is held back')
      channel.resume(command)
      assert.equal(await exit, 0)
      assert.deepEqual(heard, ['stdout held back\n', 'exit 0'])
    } finally {
      channel.close()
    }
  })

  it("a keeper that the sandbox stops before it reports its command started holds up no other command, and is given up on: the command fails clearly, killed", { timeout: 600_000 }, async (t) => {
    // Root in the sandbox may SIGSTOP any process of it. Pids come in order, so the next fork of
    // the sandbox (the keeper of the next command) is guessable: a spinner stops it the moment it
    // exists, which is usually before it reports. Before the init bounded that wait, it blocked
    // for good; then for 10 s, in which it served no other command of the sandbox.
    const spinner = [
      'import os, signal',
      "n = int(open('/proc/sys/kernel/ns_last_pid').read()) + 1",
      'print(n, flush=True)',
      'while True:',
      '    try:',
      '        os.kill(n, signal.SIGSTOP)',
      '        break',
      '    except ProcessLookupError:',
      '        pass',
    ].join('\n')
    for (let attempt = 1; attempt <= 8; attempt++) {
      let target = ''
      const armed = new Promise<void>((resolve) => {
        void backend.exec(id, { argv: ['python3', '-c', spinner], env: {}, cwd: '/', uid: 0, gid: 0 }, { onStdout: (c) => ((target += c.toString()), resolve()), onStderr: () => undefined })
      })
      await armed
      // Where the victim's start stands: the init says started or failed, or nothing yet.
      const victim: { start: 'pending' | 'started' | 'failed'; proc?: RuntimeProcess; error?: unknown } = { start: 'pending' }
      const victimStarted = backend.exec(id, { argv: ['/bin/sh', '-c', 'echo victim'], env: {}, cwd: '/', uid: 0, gid: 0 }, { onStdout: () => undefined, onStderr: () => undefined }).then(
        (proc) => Object.assign(victim, { start: 'started', proc }),
        (error: unknown) => Object.assign(victim, { start: 'failed', error }),
      )
      // Another command of the same sandbox, asked for after the victim.
      assert.equal((await run(backend, 'echo other')).stdout.toString(), 'other\n')
      const whenOtherEnded = victim.start
      assert.notEqual(whenOtherEnded, 'failed', 'the other command waited until the init gave up on the stopped keeper')
      await victimStarted
      if (victim.proc) {
        // The spinner missed, or stopped the keeper after its report (then only its exit waits).
        victim.proc.closeStdin()
        await run(backend, `kill -CONT ${target.trim()}`)
        await victim.proc.result
        await run(backend, 'pkill -f ns_last_pid; true')
        continue
      }
      assert.ok(victim.error instanceof SandstormError)
      assert.equal(victim.error.code, 'unavailable')
      assert.match(victim.error.message, /did not start within 10 s/)
      // The stopped keeper was killed with all it started.
      await until('the stopped keeper to be gone', async () => (await run(backend, 'ps -eo stat= | grep -c "^T"; true')).stdout.toString() === '0\n')
      return
    }
    t.skip('in 8 tries the spinner never stopped a keeper before its report')
  })

  it('a missing command, cwd or user is told apart', async () => {
    const missing = await backend.exec(id, { argv: ['no-such-command'], env: {}, cwd: '/', uid: 0, gid: 0 }, { onStdout: () => undefined, onStderr: () => undefined })
    assert.equal((await missing.result).exitCode, 127)
    await assert.rejects(backend.exec(id, { argv: ['true'], env: {}, cwd: '/no/such/dir', uid: 0, gid: 0 }, { onStdout: () => undefined, onStderr: () => undefined }), { code: 'invalid_argument' })
    const asUser = await run(backend, 'id -u; id -g; id -G', { uid: 1000, gid: 1000 })
    assert.equal(asUser.stdout.toString(), '1000\n1000\n1000\n')
  })

  it('the init refuses to run without a whole seccomp program on fd 4', async () => {
    // Run on the host here: it must exit before it does anything at all.
    for (const program of [null, Buffer.alloc(0), Buffer.alloc(12), Buffer.alloc(4097 * 8)]) {
      const init = spawn(runcHostHelpers.init, [], { stdio: ['ignore', 'ignore', 'ignore', 'pipe', program ? 'pipe' : 'ignore'] })
      const said: Buffer[] = []
      ;(init.stdio[3] as Socket).on('data', (c: Buffer) => said.push(c))
      if (program) (init.stdio[4] as Socket).on('error', () => undefined).end(program)
      const [code] = (await once(init, 'exit')) as [number | null]
      assert.equal(code, 1, `a program of ${program?.length ?? 'no'} bytes`)
      assert.equal(Buffer.concat(said).length, 0, 'it said nothing')
    }
  })

  it('a later agent attaches to the init of a sandbox an earlier one started, which then takes it back', async () => {
    // The earlier agent's command runs on, unheard, with its stdin at an end.
    const earlier = await backend.exec(id, { argv: ['/bin/sh', '-c', 'cat; echo eof > /tmp/earlier'], env: {}, cwd: '/', uid: 0, gid: 0 }, { onStdout: () => undefined, onStderr: () => undefined })
    const later = createRuncBackend(layout())
    const r = await run(later, 'echo adopted; cat /proc/1/cmdline')
    assert.equal(r.stdout.toString(), `adopted\n/.sandstorm/init\0sandstorm-init-${id}\0`)
    assert.equal((await earlier.result).exitCode, 137, 'the earlier channel ended')
    await until('the earlier command to see the end of its stdin', async () => (await run(later, 'cat /tmp/earlier 2>/dev/null; true')).stdout.toString() === 'eof\n')
    // Ids start at 1 on every channel: the new one's commands never meet the old one's.
    const many = await Promise.all([1, 2, 3].map((n) => run(later, `echo ${n}`)))
    assert.deepEqual(many.map((m) => m.stdout.toString()), ['1\n', '2\n', '3\n'])
    // The first agent attaches again on its next command.
    assert.equal((await run(backend, 'echo back')).stdout.toString(), 'back\n')
  })

  it('hands its channel over with a FIFO in place of /dev/null', async () => {
    // The init reserves fd 3 with /dev/null while it changes channels: an open of the sandbox's
    // /dev/null, a FIFO without a writer, would block it for good.
    assert.equal((await run(backend, 'rm /dev/null && mkfifo /dev/null && echo planted')).stdout.toString(), 'planted\n')
    try {
      const later = createRuncBackend(layout())
      assert.equal((await run(later, 'echo adopted')).stdout.toString(), 'adopted\n')
      assert.equal((await run(backend, 'echo back')).stdout.toString(), 'back\n')
    } finally {
      await run(backend, 'rm /dev/null && mknod -m 666 /dev/null c 1 3')
    }
  })

  it('the attach helper hands a channel to no process but the recorded init', async () => {
    const state = JSON.parse(await readFile(join(layout().stateRoot, id, 'state.json'), 'utf8')) as { init_process_pid: number; init_process_start: number }
    const attach = (pid: number, ticks: number) => spawnSync(runcHostHelpers.initAttach, [String(pid), String(ticks)], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'], encoding: 'utf8' })
    const reused = attach(state.init_process_pid, state.init_process_start + 1)
    assert.equal(reused.status, 1)
    assert.match(reused.stderr, /init is gone/)
    // A host process: its network namespace holds no init's socket.
    const self = readFileSync(`/proc/${process.pid}/stat`, 'utf8')
    const ticks = Number(self.slice(self.lastIndexOf(')') + 2).split(' ')[19])
    const stranger = attach(process.pid, ticks)
    assert.equal(stranger.status, 1)
    assert.match(stranger.stderr, /connecting to the sandbox's init/)
    assert.equal((await run(backend, 'echo served')).stdout.toString(), 'served\n')
  })

  it("the init's handover socket takes no channel from inside the sandbox", async () => {
    // A sandbox process (pid != 0 as the init sees it) connects and sends a socket: the init
    // must neither take it nor stop serving its agent.
    const script = [
      'import array, socket',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
      // The name is no secret: the init's command line says it.
      'name = open("/proc/1/cmdline", "rb").read().split(b"\\0")[1]',
      's.connect(b"\\0" + name)',
      'a, b = socket.socketpair()',
      'try:',
      '    s.sendmsg([b"c"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [a.fileno()]))])',
      '    s.settimeout(3)',
      '    print("word", s.recv(1))',
      'except OSError as e:',
      '    print("refused", type(e).__name__)',
    ].join('\n')
    const r = await run(backend, `python3 -c '${script}'`)
    assert.match(r.stdout.toString(), /^(refused|word b'')/, r.stderr)
    assert.equal((await run(backend, 'echo served')).stdout.toString(), 'served\n')
  })
})
