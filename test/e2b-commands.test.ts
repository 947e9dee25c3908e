/** The unmodified `e2b` SDK against a real Sandstorm: commands (foreground, background, stdin, list, connect, kill) and PTY. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { CommandExitError, TimeoutError } from 'e2b'
import { e2bSuite } from './helpers/e2b-env.js'
import { waitForText } from './helpers/text-waiter.js'
import { skipReason } from './helpers/stack.js'

const skip = skipReason()

describe('e2b SDK: commands and PTY', { skip: skip ?? false }, () => {
  const suite = e2bSuite({ sandbox: true })

  test('foreground run: output callbacks, user, cwd, envs, login shell', async () => {
    const out: string[] = []
    const err: string[] = []
    const result = await suite.sbx.commands.run('echo "$GREETING"; whoami; pwd; echo oops >&2; echo $0', {
      envs: { GREETING: 'hello' },
      onStdout: (d) => void out.push(d),
      onStderr: (d) => void err.push(d),
    })
    assert.equal(result.exitCode, 0)
    assert.equal(result.stdout, 'hello\nuser\n/home/user\n/bin/bash\n')
    assert.equal(out.join(''), result.stdout)
    assert.equal(err.join(''), 'oops\n')
    const root = await suite.sbx.commands.run('whoami; pwd', { user: 'root', cwd: '/tmp' })
    assert.equal(root.stdout, 'root\n/tmp\n')
  })

  test('a non-zero exit raises CommandExitError with the result', async () => {
    const err = await suite.sbx.commands.run('echo partial; echo bad >&2; exit 3').catch((e: unknown) => e)
    assert.ok(err instanceof CommandExitError, `expected CommandExitError, got ${String(err)}`)
    assert.equal(err.exitCode, 3)
    assert.equal(err.stdout, 'partial\n')
    assert.equal(err.stderr, 'bad\n')
  })

  test('background: wait, list, connect to the pid, kill', async () => {
    const done = await suite.sbx.commands.run('echo started; sleep 0.2; echo finished', { background: true })
    assert.equal((await done.wait()).stdout, 'started\nfinished\n')

    const seen = waitForText()
    const sleeper = await suite.sbx.commands.run('echo ready; exec sleep 600', { background: true, onStdout: (d) => seen.push(d) })
    await seen.until('ready')
    const listed = await suite.sbx.commands.list()
    const mine = listed.find((p) => p.pid === sleeper.pid)
    assert.ok(mine, `pid ${sleeper.pid} listed among ${JSON.stringify(listed)}`)
    assert.equal(mine.cmd, '/bin/bash')
    assert.deepEqual(mine.args, ['-l', '-c', 'echo ready; exec sleep 600'])

    const attached = await suite.sbx.commands.connect(sleeper.pid)
    assert.equal(attached.pid, sleeper.pid)
    assert.equal(await suite.sbx.commands.kill(sleeper.pid), true)
    await assert.rejects(attached.wait(), CommandExitError)
    await assert.rejects(sleeper.wait(), CommandExitError)
    assert.equal(await suite.sbx.commands.kill(sleeper.pid), false, 'an ended process is not found')
    assert.ok(!(await suite.sbx.commands.list()).some((p) => p.pid === sleeper.pid))
  })

  test('sendStdin and closeStdin', async () => {
    const handle = await suite.sbx.commands.run('cat', { background: true, stdin: true })
    await suite.sbx.commands.sendStdin(handle.pid, 'line one\n')
    await suite.sbx.commands.sendStdin(handle.pid, new TextEncoder().encode('line two\n'))
    await suite.sbx.commands.closeStdin(handle.pid)
    assert.equal((await handle.wait()).stdout, 'line one\nline two\n')
  })

  test('timeouts: a command longer than timeoutMs raises TimeoutError', async () => {
    await assert.rejects(suite.sbx.commands.run('sleep 30', { timeoutMs: 500 }), TimeoutError)
  })

  test('PTY: create, input, resize, kill', async () => {
    const screen = waitForText()
    const decoder = new TextDecoder()
    const pty = await suite.sbx.pty.create({ cols: 80, rows: 24, onData: (d) => screen.push(decoder.decode(d, { stream: true })) })
    await suite.sbx.pty.sendInput(pty.pid, new TextEncoder().encode('tty; stty size; echo "marker-$((6*7))"\n'))
    await screen.until('marker-42')
    assert.match(screen.text(), /\/dev\/pts\/\d+/)
    assert.match(screen.text(), /24 80/)

    await suite.sbx.pty.resize(pty.pid, { cols: 120, rows: 40 })
    await suite.sbx.pty.sendInput(pty.pid, new TextEncoder().encode('stty size; echo "resized-$((1+1))"\n'))
    await screen.until('resized-2')
    assert.match(screen.text(), /40 120/)

    assert.equal(await suite.sbx.pty.kill(pty.pid), true)
    const result = await pty.wait().catch((e: unknown) => e)
    assert.ok(result instanceof CommandExitError, 'a killed PTY ends with a non-zero result')
  })

  test('PTY without python3 in the sandbox: the terminal is made by the sandbox init, Ctrl-C and the exit code reach it', async () => {
    await suite.sbx.commands.run('rm -f /usr/bin/python3* && ! command -v python3', { user: 'root' })
    const screen = waitForText()
    const decoder = new TextDecoder()
    const pty = await suite.sbx.pty.create({ cols: 90, rows: 20, onData: (d) => screen.push(decoder.decode(d, { stream: true })) })
    const type = (text: string) => suite.sbx.pty.sendInput(pty.pid, new TextEncoder().encode(text))
    await type('stty size; echo "no-python-$((2*3))"\n')
    await screen.until('no-python-6')
    assert.match(screen.text(), /20 90/)
    await type('sleep 100\n')
    // Ctrl-C once sleep runs: typed earlier, it would reach bash, and sleep would outlive the
    // SDK's 60-second terminal stream.
    await suite.sbx.commands.run('for i in $(seq 200); do pgrep -x sleep >/dev/null && exit 0; sleep 0.05; done; exit 1')
    await type('\x03')
    await type('echo "after-ctrl-c-$((4+4))"; exit 9\n')
    await screen.until('after-ctrl-c-8')
    const result = await pty.wait().catch((e: unknown) => e)
    assert.ok(result instanceof CommandExitError, 'exit 9 is a non-zero exit')
    assert.equal(result.exitCode, 9)
  })
})
