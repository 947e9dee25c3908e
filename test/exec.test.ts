/**
 * Commands end to end: SDK -> HTTP server -> local agent -> runc, in a debian sandbox.
 */
import assert from 'node:assert/strict'
import { setTimeout as delay } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import { AbortError, CommandExitError, ConflictError, InvalidArgumentError, NotFoundError, Sandbox, TimeoutError } from '@sandstorm/sdk'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false

/** Command lines of every process in the sandbox, read from its own /proc. */
async function processList(sbx: Sandbox): Promise<string[]> {
  const script = 'for d in /proc/[0-9]*; do tr "\\0" " " < $d/cmdline 2>/dev/null; echo; done'
  const { stdout } = await sbx.commands.run(script)
  return stdout.split('\n').map((l) => l.trim()).filter(Boolean)
}


/** A promise that resolves once `predicate` holds for the text the returned `push` collected. */
function collector(predicate: (text: string) => boolean) {
  let text = ''
  let resolve!: () => void
  const reached = new Promise<void>((r) => (resolve = r))
  return {
    reached,
    push(data: string) {
      text += data
      if (predicate(text)) resolve()
    },
    get text() {
      return text
    },
  }
}

describe('exec end to end', { skip }, () => {
  let stack: Stack
  let sbx: Sandbox

  before(async () => {
    stack = await startStack()
    sbx = await Sandbox.create('debian', { ...stack.conn, env: { SANDBOX_WIDE: 'yes' } })
  })
  after(async () => {
    await stack?.close()
  })

  it('runs a shell string with sh -c and an argv as it is', async () => {
    const shell = await sbx.commands.run('echo $((6*7)) "$SANDBOX_WIDE"')
    assert.equal(shell.stdout, '42 yes\n')
    assert.equal(shell.exitCode, 0)
    const argv = await sbx.commands.run(['echo', 'a  b', '$HOME', ';', 'exit 3'])
    assert.equal(argv.stdout, 'a  b $HOME ; exit 3\n')
  })

  it('passes env and cwd', async () => {
    const r = await sbx.commands.run('echo "$FOO|$SANDBOX_WIDE"; pwd', { envs: { FOO: 'bar baz', SANDBOX_WIDE: 'overridden' }, cwd: '/tmp' })
    assert.equal(r.stdout, 'bar baz|overridden\n/tmp\n')
  })

  it('runs as a named user, a uid given as a string, and root by default', async () => {
    assert.equal((await sbx.commands.run('id -u')).stdout, '0\n')
    const named = await sbx.commands.run('id -u; id -g; echo $HOME; pwd', { user: 'user' })
    assert.equal(named.stdout, '1000\n1000\n/home/user\n/home/user\n')
    assert.equal((await sbx.commands.run('id -u', { user: '1000' })).stdout, '1000\n')
    assert.equal((await sbx.commands.run(['id', '-u'], { user: '4242' })).stdout, '4242\n')
  })

  it('gives stdin to the command and closes it', async () => {
    const r = await sbx.commands.run('cat; echo "<eof>"', { stdin: 'line one\nline two\n' })
    assert.equal(r.stdout, 'line one\nline two\n<eof>\n')
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i)
    const hex = await sbx.commands.run('od -An -v -tx1 | tr -d " \\n"', { stdin: bytes })
    assert.equal(hex.stdout, Buffer.from(bytes).toString('hex'))
  })

  it('streams stdout and stderr in order, before the result', async () => {
    const seen: string[] = []
    let resolved = false
    const lines = Array.from({ length: 300 }, (_, i) => `line ${i}`)
    // The pauses inside the sandbox only separate the writes to two different pipes in time.
    const script = `echo first; sleep 0.2; echo second >&2; sleep 0.2; for i in $(seq 0 299); do echo "line $i"; done; echo last >&2`
    const run = sbx.commands.run(script, {
      onStdout: (d) => {
        assert.equal(resolved, false, 'stdout arrived after the result')
        seen.push(`out:${d}`)
      },
      onStderr: (d) => {
        assert.equal(resolved, false, 'stderr arrived after the result')
        seen.push(`err:${d}`)
      },
    })
    const result = await run.finally(() => (resolved = true))
    const out = seen.filter((s) => s.startsWith('out:')).map((s) => s.slice(4)).join('')
    assert.equal(out, `first\n${lines.join('\n')}\n`)
    assert.equal(result.stdout, out)
    assert.equal(result.stderr, 'second\nlast\n')
    assert.equal(seen[0], 'out:first\n')
    assert.equal(seen[1], 'err:second\n')
  })

  it('reports the exit code; a non-zero one throws CommandExitError with the result', async () => {
    const err = await sbx.commands.run('echo partial; echo oops >&2; exit 7').then(
      () => assert.fail('expected CommandExitError'),
      (e: unknown) => e,
    )
    assert.ok(err instanceof CommandExitError, `expected CommandExitError, got ${String(err)}`)
    assert.equal(err.exitCode, 7)
    assert.equal(err.result.exitCode, 7)
    assert.equal(err.stdout, 'partial\n')
    assert.equal(err.stderr, 'oops\n')
    assert.match(err.message, /code 7/)
  })

  it('timeoutMs kills the whole process tree', async () => {
    const err = await sbx.commands.run("sh -c 'sleep 300 & sleep 300'", { timeoutMs: 500 }).then(
      () => assert.fail('expected TimeoutError'),
      (e: unknown) => e,
    )
    assert.ok(err instanceof TimeoutError, `expected TimeoutError, got ${String(err)}`)
    assert.equal(err.result?.timedOut, true)
    assert.equal(err.result?.signal, 'SIGKILL')
    const left = (await processList(sbx)).filter((l) => l.includes('sleep 300'))
    assert.deepEqual(left, [])
  })

  it('runs background commands: list, stdin, wait, kill of a tree', async () => {
    const cat = await sbx.commands.run('cat', { background: true, keepStdin: true })
    const tree = await sbx.commands.run("sh -c 'sleep 301 & sleep 301'", { background: true })
    const listed = await sbx.commands.list()
    for (const pid of [cat.pid, tree.pid]) {
      const p = listed.find((x) => x.pid === pid)
      assert.ok(p, `process ${pid} is not listed: ${JSON.stringify(listed)}`)
      assert.equal(p.running, true)
      assert.equal(p.result, null)
    }
    assert.equal(listed.find((x) => x.pid === cat.pid)?.argv.at(-1), 'cat')

    await cat.sendStdin('hello ')
    await sbx.commands.sendStdin(cat.pid, 'world\n')
    await cat.closeStdin()
    const catResult = await cat.wait()
    assert.equal(catResult.stdout, 'hello world\n')
    assert.equal(catResult.exitCode, 0)

    assert.equal(await tree.kill(), true)
    const killed = await tree.wait().then(
      () => assert.fail('expected the killed command to fail'),
      (e: unknown) => e,
    )
    assert.ok(killed instanceof CommandExitError, `expected CommandExitError, got ${String(killed)}`)
    assert.equal(killed.exitCode, 137)
    assert.deepEqual((await processList(sbx)).filter((l) => l.includes('sleep 301')), [])
    const after = (await sbx.commands.list()).find((x) => x.pid === tree.pid)
    assert.equal(after?.running, false)
    assert.equal(after?.result?.exitCode, 137)
    assert.equal(await sbx.commands.kill(999_999), false)
  })

  it('connect(pid) replays the output so far, then follows live', async () => {
    const handle = await sbx.commands.run('echo early; read line; echo "got $line"', { background: true, keepStdin: true })
    const first = collector((t) => t.includes('early\n'))
    const attached = await sbx.commands.connect(handle.pid, { onStdout: first.push })
    await first.reached
    // A second follower, attached later, gets the same output replayed.
    const second = collector((t) => t.includes('early\n'))
    const again = await sbx.commands.connect(handle.pid, { onStdout: second.push })
    await second.reached
    await sbx.commands.sendStdin(handle.pid, 'input\n')
    const [a, b] = await Promise.all([attached.wait(), again.wait()])
    assert.equal(a.stdout, 'early\ngot input\n')
    assert.equal(b.stdout, 'early\ngot input\n')
    // And once it has ended, connect still replays everything and the result.
    const late = await (await sbx.commands.connect(handle.pid)).wait()
    assert.equal(late.stdout, 'early\ngot input\n')
  })

  it('aborting a foreground run kills its tree', async () => {
    const controller = new AbortController()
    const run = sbx.commands.run("sh -c 'sleep 303 & echo started; sleep 303'", {
      signal: controller.signal,
      onStdout: (d) => d.includes('started') && controller.abort(),
    })
    await assert.rejects(run, AbortError)
    await until('the aborted command is gone', async () => !(await processList(sbx)).some((l) => l.includes('sleep 303')))
    const listed = (await sbx.commands.list()).filter((p) => p.argv.at(-1)?.includes('sleep 303'))
    assert.equal(listed.length, 1)
    assert.equal(listed[0]?.running, false)
  })

  it('a command that leaves a daemon running ends when it does; the daemon runs on, printing freely', async () => {
    // Before, the result waited for every holder of the output pipes: here, for 305 s.
    const r = await sbx.commands.run("sh -c 'while :; do echo tick; sleep 0.05; done & echo started $!'", { timeoutMs: 60_000 })
    // What the daemon printed during the short grace after the end comes along; later output does not.
    const pid = /^started (\d+)$/m.exec(r.stdout)?.[1]
    assert.ok(pid, `expected "started PID", got ${JSON.stringify(r.stdout)}`)
    assert.equal(r.exitCode, 0)
    const check = await sbx.commands.run(['sh', '-c', `sleep 0.3; kill -0 ${pid} && echo alive; kill ${pid}`])
    assert.equal(check.stdout, 'alive\n')
    const failing = await sbx.commands.run("sh -c 'sleep 305 & echo $!; exit 9'").then(
      () => assert.fail('expected CommandExitError'),
      (e: unknown) => e,
    )
    assert.ok(failing instanceof CommandExitError, `expected CommandExitError, got ${String(failing)}`)
    assert.equal(failing.exitCode, 9)
    await sbx.commands.run(['kill', failing.stdout.trim()])
  })

  it("an agent exec's signal covers the start only: aborting it afterwards does not kill the process", async () => {
    const controller = new AbortController()
    const { pid } = await stack.agent.exec(sbx.sandboxId, { argv: ['sleep', '304'], env: {} }, { signal: controller.signal })
    controller.abort()
    // A command run after the abort goes over the init's channel after any kill the abort sent.
    const check = await sbx.commands.run(['sh', '-c', `kill -0 ${pid} && echo alive`])
    assert.equal(check.stdout, 'alive\n')
    assert.equal((await stack.agent.processes(sbx.sandboxId)).find((p) => p.pid === pid)?.running, true)
    await stack.agent.signal(sbx.sandboxId, pid, 'SIGKILL')
    assert.equal((await stack.agent.wait(sbx.sandboxId, pid)).signal, 'SIGKILL')
  })

  it('keeps env values as given, newlines and = included', async () => {
    const value = 'a=b\nsecond line $HOME `id` \'"'
    const r = await sbx.commands.run(['printenv', 'ODD'], { envs: { ODD: value } })
    assert.equal(r.stdout, `${value}\n`)
  })

  it('answers 404 for an unknown pid and 409 for stdin to an ended process', async () => {
    const handle = await sbx.commands.connect(999_999)
    await assert.rejects(handle.wait(), NotFoundError)
    await assert.rejects(sbx.commands.sendStdin(999_999, 'x'), NotFoundError)
    // A command that ends with its stdin still open has ended all the same.
    const done = await sbx.commands.run('true', { background: true, keepStdin: true })
    await done.wait()
    await assert.rejects(sbx.commands.sendStdin(done.pid, 'late'), ConflictError)
  })

  it('answers 400 for a missing cwd and for an unknown user', async () => {
    await assert.rejects(sbx.commands.run('pwd', { cwd: '/no/such/dir' }), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(e)}`)
      assert.match(e.message, /\/no\/such\/dir/)
      return true
    })
    await assert.rejects(sbx.commands.run('id', { user: 'nobody-here' }), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(e)}`)
      assert.match(e.message, /nobody-here/)
      return true
    })
    const status = await fetch(`${stack.conn.apiUrl}/v1/sandboxes/${sbx.sandboxId}/exec`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.conn.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ cmd: 'pwd', cwd: '/no/such/dir' }),
    })
    assert.equal(status.status, 400)
    await status.body?.cancel()
  })

  it('delivers 5 MB of output complete', async () => {
    const size = 5 * 1024 * 1024
    let streamed = 0
    const r = await sbx.commands.run(`head -c ${size} /dev/zero | tr '\\0' 'a'`, { onStdoutBytes: (b) => (streamed += b.byteLength) })
    assert.equal(streamed, size)
    assert.equal(r.stdout.length, size)
    assert.ok(/^a+$/.test(r.stdout))
  })

  it('a slow reader of more output than the agent keeps still gets the end and the result', async () => {
    const size = 20 * 1024 * 1024
    const res = await fetch(`${stack.conn.apiUrl}/v1/sandboxes/${sbx.sandboxId}/exec`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.conn.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ cmd: `head -c ${size} /dev/zero` }),
    })
    assert.equal(res.status, 200)
    const types: string[] = []
    let received = 0
    let end: { exitCode: number } | undefined
    let text = ''
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      text += Buffer.from(chunk).toString('utf8')
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n')) {
        const event = JSON.parse(text.slice(0, nl)) as { type: string; data?: string; result?: { exitCode: number } }
        text = text.slice(nl + 1)
        types.push(event.type)
        if (event.data) received += Buffer.from(event.data, 'base64').byteLength
        if (event.type === 'end') end = event.result
      }
      // A slow client: the command writes far faster than this reads.
      await delay(2)
    }
    assert.equal(types[0], 'start')
    assert.equal(types.at(-1), 'end')
    assert.equal(end?.exitCode, 0)
    assert.ok(received > 0 && received <= size, `received ${received} of ${size} bytes`)
  })

  it('completes 20 concurrent execs', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => sbx.commands.run(`echo ${i}; echo e${i} >&2`)))
    results.forEach((r, i) => {
      assert.equal(r.stdout, `${i}\n`)
      assert.equal(r.stderr, `e${i}\n`)
    })
  })

  it('answers 404 for an exec after the sandbox was killed', async () => {
    const doomed = await Sandbox.create('debian', { ...stack.conn })
    assert.equal(await doomed.kill(), true)
    await assert.rejects(doomed.commands.run('true'), NotFoundError)
    await assert.rejects(doomed.commands.run('true', { background: true }), NotFoundError)
    assert.equal(await doomed.kill(), false)
  })
})
