/**
 * Terminals as a person uses them: the real `sandstorm` CLI (`shell`, `exec -it`) in a real
 * terminal (a tmux pane of the test's own), typed into with send-keys and read with
 * capture-pane, against a real stack: bash, top, python3, vi, Ctrl-C, resizes, exit codes, the
 * terminal put back in cooked mode, and after every case no process left in the sandbox. Then bad
 * input, and the WebSocket route from a `ws` client: auth, sizes, a socket closed mid-session.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, afterEach, before, describe, it } from 'node:test'
import WebSocket from 'ws'
import type { ResultPromise } from 'execa'
import { listAgents, Sandbox } from '@sandstorm/sdk'
import { ptyKeyProtocol, ptyProtocol } from '../src/shared/index.js'
import { cliMain, runCli } from './helpers/cli-process.js'
import { startAgentProcess, startServerProcess, type ServerProcess, stopFleetProcesses } from './helpers/fleet-processes.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { openPane, type TmuxPane } from './helpers/tmux-pane.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? (existsSync('/usr/bin/tmux') ? false : 'no tmux (Debian package tmux)')

/** A shell word, quoted for sh. */
const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

/** What a CLI run in a pane left: its exit code, and the pane's terminal settings before and after it. */
interface CliInPane {
  pane: TmuxPane
  /** TERM of the pane's own terminal. */
  term(): Promise<string>
  /** Waits for the CLI to exit; its code. */
  exitCode(): Promise<number>
  /** `stty -g` of the pane before the CLI ran and after it exited. */
  stty(): Promise<{ before: string; after: string }>
}

let runs = 0
/** A function that runs `sandstorm ARGS` against a server in a new 100x30 pane (stderr to the pane too), kept in `panes` for closing. */
function cliInPanes(conn: () => { apiUrl: string; apiKey: string }, dir: () => string, panes: TmuxPane[]): (...args: string[]) => Promise<CliInPane> {
  return async (...args) => {
    const at = join(dir(), `run-${++runs}`)
    const file = (name: string): string => `${at}-${name}`
    const cli = [process.execPath, cliMain, '--url', conn().apiUrl, '--api-key', conn().apiKey, ...args].map(shq).join(' ')
    const command = `stty -g > ${file('before')}; printf %s "$TERM" > ${file('term')}; ${cli}; echo $? > ${file('exit')}; stty -g > ${file('after')}`
    const pane = await openPane(command, { cols: 100, rows: 30 })
    panes.push(pane)
    const read = (name: string): Promise<string> => until(`the pane's ${name} file`, async () => (existsSync(file(name)) ? (await readFile(file(name), 'utf8')).trim() || false : false))
    return {
      pane,
      term: () => read('term'),
      exitCode: async () =>
        Number(
          await read('after')
            .then(() => read('exit'))
            .catch(async (err: unknown) => {
              throw new Error(`${(err as Error).message}\n--- the pane shows:\n${await pane.screen().catch(() => '(gone)')}`)
            }),
        ),
      stty: async () => ({ before: await read('before'), after: await read('after') }),
    }
  }
}

/** Every process in the sandbox but its init and the command listing them, as `pid cmdline`. */
async function processesIn(sandbox: Sandbox): Promise<string[]> {
  const script = `cd /proc && for p in [0-9]*; do [ "$p" = 1 ] || [ "$p" = "$$" ] || [ "$p" = "$PPID" ] || echo "$p $(tr '\\0' ' ' < $p/cmdline 2>/dev/null)"; done`
  const { stdout } = await sandbox.commands.run(['/bin/sh', '-c', script])
  return stdout.split('\n').filter((l) => l.trim() !== '')
}

/** Waits until nothing is left in the sandbox: no process in its process list or its /proc, no terminal open in its /dev/pts. */
async function nothingLeftIn(sandbox: Sandbox): Promise<void> {
  let last: string[] = []
  await until('no process or terminal left in the sandbox', async () => {
    const running = (await sandbox.commands.list()).filter((p) => p.running).map((p) => `${p.pid} ${p.argv.join(' ')} (listed)`)
    const terminals = (await sandbox.commands.run(['ls', '/dev/pts'])).stdout.split('\n').filter((name) => name !== '' && name !== 'ptmx').map((name) => `/dev/pts/${name}`)
    last = [...running, ...(await processesIn(sandbox)), ...terminals]
    return last.length === 0
  }, 15_000).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; left: ${JSON.stringify(last)}`)
  })
}

describe('terminals: the CLI in a real terminal, and the WebSocket route', { skip, timeout: 600_000 }, () => {
  let stack: Stack
  let sbx: Sandbox
  let dir: string
  const panes: TmuxPane[] = []

  before(async () => {
    stack = await startStack()
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-terminal-'))
    sbx = await Sandbox.create('debian', { ...stack.conn, timeoutMs: 20 * 60_000 })
    // A vi for the debian template (which has none): the host's static busybox.
    await sbx.files.write('/usr/local/bin/busybox', new Uint8Array(await readFile('/bin/busybox')))
    await sbx.commands.run('chmod 755 /usr/local/bin/busybox')
  })
  // Closing a pane hangs up a CLI still in it (a failed case), and with it the command in the sandbox.
  afterEach(async () => {
    for (const pane of panes.splice(0)) await pane.close()
  })
  after(async () => {
    await stack?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  const cliInPane = cliInPanes(() => stack.conn, () => dir, panes)

  const prompt = /root@[^\s:]+:[^\n]*#\s*$/m

  it('shell: bash with a prompt, the pane\'s TERM, a tty, stty size of the pane and after a resize, Ctrl-C stops sleep, exit 7 is the exit code and the terminal is cooked again', async () => {
    const run = await cliInPane('shell', sbx.sandboxId)
    const { pane } = run
    await pane.until(prompt)
    await pane.type('echo "term=$TERM"')
    await pane.until(`term=${await run.term()}`)
    await pane.type('tty')
    await pane.until(/^\/dev\/pts\/\d+\s*$/m)
    await pane.type('stty size')
    await pane.until(/^30 100\s*$/m)
    await pane.resize(120, 40)
    await pane.type('stty size')
    await pane.until(/^40 120\s*$/m)

    await pane.type('sleep 100')
    await until('sleep 100 to run', async () => (await processesIn(sbx)).some((p) => p.endsWith('sleep 100 ')))
    await pane.keys('C-c')
    await pane.type('echo "alive-$((3+4))"')
    await pane.until(/^alive-7\s*$/m)
    assert.ok(!(await processesIn(sbx)).some((p) => p.includes('sleep 100')), 'Ctrl-C ended sleep')

    await pane.type('exit 7')
    assert.equal(await run.exitCode(), 7)
    const { before, after } = await run.stty()
    assert.equal(after, before, 'the terminal is back in the mode it was in')
    assert.doesNotMatch(after, /^$/)
    await nothingLeftIn(sbx)
  })

  it('shell: top draws its screen and quits on q', async () => {
    const run = await cliInPane('shell', sbx.sandboxId)
    await run.pane.until(prompt)
    await run.pane.type('top')
    await run.pane.until(/Tasks:\s+\d+ total/)
    await run.pane.keys('q')
    // top puts the terminal back with TCSAFLUSH, which drops what was typed before it exited: the
    // next line is typed once it is gone (a loaded host once lost it, and saw an empty prompt).
    await until('top to exit on q', async () => !(await processesIn(sbx)).some((p) => /^\d+ top\b/.test(p)))
    await run.pane.type('echo "top-done-$((1+1))"')
    await run.pane.until(/^top-done-2\s*$/m)
    await run.pane.type('exit')
    assert.equal(await run.exitCode(), 0)
    assert.equal((await run.stty()).after, (await run.stty()).before)
    await nothingLeftIn(sbx)
  })

  it('shell: the python3 REPL computes and ends on Ctrl-D', async () => {
    const run = await cliInPane('shell', sbx.sandboxId)
    await run.pane.until(prompt)
    await run.pane.type('python3')
    await run.pane.until(/^>>>\s*$/m)
    await run.pane.type('print(6*7)')
    await run.pane.until(/^42\s*$/m)
    await run.pane.keys('C-d')
    await run.pane.type('echo "py-done-$((5+5))"')
    await run.pane.until(/^py-done-10\s*$/m)
    await run.pane.type('exit')
    assert.equal(await run.exitCode(), 0)
    await nothingLeftIn(sbx)
  })

  it('shell -- vi FILE: text typed, :wq, and the file holds it', async () => {
    const run = await cliInPane('shell', sbx.sandboxId, '--', 'busybox', 'vi', '/tmp/note.txt')
    await run.pane.until('/tmp/note.txt')
    await run.pane.keys('i')
    await run.pane.until(/^I \/tmp\/note\.txt/m)
    await run.pane.type('typed in vi', false)
    await run.pane.keys('Escape')
    // As a person would: wait for vi to leave insert mode (an Escape glued to ":" reads as a key sequence).
    await run.pane.until(/^- \/tmp\/note\.txt/m)
    await run.pane.type(':wq')
    assert.equal(await run.exitCode(), 0)
    assert.equal(await sbx.files.read('/tmp/note.txt'), 'typed in vi\n')
    assert.equal((await run.stty()).after, (await run.stty()).before)
    await nothingLeftIn(sbx)
  })

  it("exec -it ID -- sh -c 'exit 3' exits 3; --user, --cwd and --env reach the command", async () => {
    const run = await cliInPane('exec', '-it', sbx.sandboxId, '--', 'sh', '-c', 'exit 3')
    assert.equal(await run.exitCode(), 3)
    assert.equal((await run.stty()).after, (await run.stty()).before)

    const other = await cliInPane('shell', sbx.sandboxId, '--user', 'nobody', '--cwd', '/tmp', '--env', 'GREETING=hello there', '--', 'sh', '-c', 'echo "i am $(id -un) in $(pwd), $GREETING"; exit 4')
    await other.pane.until('i am nobody in /tmp, hello there')
    assert.equal(await other.exitCode(), 4)
    await nothingLeftIn(sbx)
  })

  it('SIGTERM and SIGHUP to the CLI: the terminal is put back and the command hung up', async () => {
    for (const [signal, code] of [['SIGTERM', 143], ['SIGHUP', 129]] as const) {
      const run = await cliInPane('shell', sbx.sandboxId)
      await run.pane.until(prompt)
      await run.pane.type('sleep 200')
      await until('sleep 200 to run', async () => (await processesIn(sbx)).some((p) => p.endsWith('sleep 200 ')))
      process.kill(await cliPid(run.pane), signal)
      assert.equal(await run.exitCode(), code)
      assert.equal((await run.stty()).after, (await run.stty()).before)
      await nothingLeftIn(sbx)
    }
  })

  it('the sandbox killed under an open shell: the CLI says so, exits non-zero, and the terminal is put back', async () => {
    const doomed = await Sandbox.create('debian', stack.conn)
    const run = await cliInPane('shell', doomed.sandboxId)
    await run.pane.until(prompt)
    await doomed.kill()
    const code = await run.exitCode()
    assert.notEqual(code, 0)
    await run.pane.until(/^sandstorm: .*(stopped|not running|gone)/m)
    assert.equal((await run.stty()).after, (await run.stty()).before)
  })

  it('the server shut down under an open shell: the CLI says so, exits 5, the terminal is put back, and the shell was hung up', async () => {
    const other = await startStack()
    try {
      const lone = await Sandbox.create('debian', other.conn)
      const run = await cliInPanes(() => other.conn, () => dir, panes)('shell', lone.sandboxId)
      await run.pane.until(prompt)
      await run.pane.type('sleep 300')
      await until('sleep 300 to run', async () => (await processesIn(lone)).some((p) => p.endsWith('sleep 300 ')))
      await other.server.close()
      assert.equal(await run.exitCode(), 5)
      await run.pane.until(/^sandstorm: the server shut down/m)
      assert.equal((await run.stty()).after, (await run.stty()).before)
      // The agent is still here (the server only stopped): ask it directly.
      const psIn = async (): Promise<string> => {
        const { pid } = await other.agent.exec(lone.sandboxId, { argv: ['ps', '-e', '-o', 'args='], env: {} })
        let out = ''
        for await (const event of other.agent.follow(lone.sandboxId, pid)) if (event.type === 'stdout') out += Buffer.from(event.data, 'base64').toString()
        return out
      }
      let seen = ''
      await until('the shell and its sleep to be gone', async () => !/sleep 300|bash/.test((seen = await psIn()))).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}; ps shows: ${seen}`)
      })
    } finally {
      await other.close()
    }
  })

  it('bad input: an unknown, a killed or a paused sandbox, no TTY; each a clear line and a non-zero code', async () => {
    const unknown = await runCli(stack, 'shell', 'sb-0000000000000000')
    assert.equal(unknown.code, 3, unknown.stderr)
    assert.match(unknown.stderr, /^sandstorm: .*sb-0000000000000000.*not found\n$/)

    const killed = await Sandbox.create('debian', stack.conn)
    await killed.kill()
    const gone = await runCli(stack, 'shell', killed.sandboxId)
    assert.equal(gone.code, 3, gone.stderr)
    assert.match(gone.stderr, /not found/)

    const noTty = await runCli(stack, 'exec', '-it', sbx.sandboxId, '--', 'true')
    assert.equal(noTty.code, 2, noTty.stderr)
    assert.match(noTty.stderr, /^sandstorm: the input device is not a TTY/)

    const paused = await Sandbox.create('debian', stack.conn)
    try {
      const res = await fetch(`${stack.conn.apiUrl}/sandboxes/${paused.sandboxId}/pause`, { method: 'POST', headers: { authorization: `Bearer ${stack.conn.apiKey}` } })
      assert.equal(res.status, 204, await res.text())
      const run = await cliInPane('shell', paused.sandboxId)
      assert.notEqual(await run.exitCode(), 0)
      await run.pane.until(/^sandstorm: sandbox "[^"]+" is paused: resume it first/m)
      assert.equal((await run.stty()).after, (await run.stty()).before)
      const resumed = await fetch(`${stack.conn.apiUrl}/sandboxes/${paused.sandboxId}/connect`, { method: 'POST', headers: { authorization: `Bearer ${stack.conn.apiKey}`, 'content-type': 'application/json' }, body: '{"timeout":600}' })
      assert.ok(resumed.ok, await resumed.text())
      await nothingLeftIn(paused)
    } finally {
      await paused.kill()
    }
  })

  it("the SDK's sandbox.pty: create with onData, input in order, resize, connect again, kill; sizes checked", async () => {
    const decoder = new TextDecoder()
    let screen = ''
    const handle = await sbx.pty.create({ cols: 70, rows: 21, onData: (d) => void (screen += decoder.decode(d, { stream: true })) })
    // Many small inputs in a row arrive in the order they were sent.
    for (const key of 'echo "in-order-$((8*8))"; stty size\n') void sbx.pty.sendInput(handle.pid, key)
    await until('the echo', async () => /^in-order-64\s*$/m.test(screen) && /^21 70\s*$/m.test(screen))
    await handle.resize({ cols: 101, rows: 33 })
    await handle.sendInput('stty size\n')
    await until('the new size', async () => /^33 101\s*$/m.test(screen))

    let again = ''
    const attached = await sbx.pty.connect(handle.pid, { onData: (d) => void (again += decoder.decode(d, { stream: true })) })
    await until('the kept output on connect', async () => again.includes('in-order-64'))
    assert.equal(await sbx.pty.kill(handle.pid), true)
    await assert.rejects(handle.wait(), /exit|signal|137/i)
    await assert.rejects(attached.wait())
    assert.equal(await sbx.pty.kill(999_999), false, 'no such process')
    await assert.rejects(sbx.pty.create({ cols: 0, rows: 24, onData: () => undefined }), /pty\.cols: expected an integer from 1 to 1000, got 0/)

    const done = await sbx.pty.create({ cols: 80, rows: 24, cmd: ['sh', '-c', 'exit 0'], onData: () => undefined })
    assert.equal((await done.wait()).exitCode, 0)
    await nothingLeftIn(sbx)
  })

  /** A session on the WebSocket route, its messages collected from the first one. */
  interface Session {
    ws: WebSocket
    texts: { type: string; message?: string; pid?: number; exitCode?: number }[]
    output(): string
    /** Resolves with the close code. */
    closed: Promise<number>
  }

  /** Opens the WebSocket route; resolves with the session once open, or with the refusing answer. */
  function openSocket(query: string, options: { protocols?: string[]; headers?: Record<string, string> } = {}): Promise<Session | { status: number; body: string }> {
    const ws = new WebSocket(`${stack.conn.apiUrl.replace(/^http/, 'ws')}/v1/sandboxes/${sbx.sandboxId}/pty?${query}`, options.protocols ?? [], { headers: options.headers })
    const texts: Session['texts'] = []
    let output = ''
    ws.on('message', (data, isBinary) => (isBinary ? (output += data.toString()) : texts.push(JSON.parse(data.toString()))))
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve({ ws, texts, output: () => output, closed }))
      ws.once('unexpected-response', (_req, res) => {
        let body = ''
        res.on('data', (c: Buffer) => (body += c.toString())).on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      })
      ws.once('error', reject)
    })
  }

  const isSession = (s: Session | { status: number; body: string }): s is Session => 'ws' in s
  const refusal = (s: Session | { status: number; body: string }): { status: number; body: string } => {
    assert.ok(!isSession(s), 'expected the upgrade to be refused')
    return s
  }

  it('the WebSocket route: no key is 401 before the upgrade, a wrong one too, the key as a subprotocol works and is not echoed', async () => {
    const none = refusal(await openSocket('cols=80&rows=24'))
    assert.equal(none.status, 401)
    assert.match(none.body, /missing API key/)
    const wrong = refusal(await openSocket('cols=80&rows=24', { protocols: [ptyProtocol, ptyKeyProtocol('not-the-key')] }))
    assert.equal(wrong.status, 401)

    // A handshake that is not a WebSocket's is refused before anything starts.
    const raw = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(`${stack.conn.apiUrl}/v1/sandboxes/${sbx.sandboxId}/pty?cols=80&rows=24`, { headers: { connection: 'Upgrade', upgrade: 'websocket', authorization: `Bearer ${stack.conn.apiKey}` } })
      req.on('response', (res) => {
        let body = ''
        res.on('data', (c: Buffer) => (body += c.toString())).on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      })
      req.on('upgrade', () => reject(new Error('upgraded without a WebSocket key')))
      req.on('error', reject)
      req.end()
    })
    assert.equal(raw.status, 400)
    assert.match(raw.body, /Sec-WebSocket-Key/)
    await nothingLeftIn(sbx)

    const session = await openSocket(`cols=80&rows=24&cmd=sh&cmd=-c&cmd=${encodeURIComponent('stty size; exit 5')}`, { protocols: [ptyProtocol, ptyKeyProtocol(stack.conn.apiKey)] })
    assert.ok(isSession(session))
    assert.equal(session.ws.protocol, ptyProtocol)
    assert.equal(await session.closed, 1000)
    assert.match(session.output(), /24 80/)
    assert.equal(session.texts[0]?.type, 'start')
    assert.deepEqual(session.texts.at(-1), { type: 'exit', exitCode: 5 })
    await nothingLeftIn(sbx)
  })

  it('the WebSocket route and exec: a size of 0 or too large answers 400 naming the field; a bad resize message is answered and the session goes on', async () => {
    const headers = { authorization: `Bearer ${stack.conn.apiKey}` }
    const zero = refusal(await openSocket('cols=0&rows=24', { headers }))
    assert.equal(zero.status, 400)
    assert.match(JSON.parse(zero.body).message, /^cols: expected an integer from 1 to 1000, got "0"/)
    const noRows = refusal(await openSocket('cols=80', { headers }))
    assert.equal(noRows.status, 400)
    assert.match(JSON.parse(noRows.body).message, /^rows: expected an integer from 1 to 1000/)

    const post = (path: string, body: unknown): Promise<Response> =>
      fetch(`${stack.conn.apiUrl}/v1/sandboxes/${sbx.sandboxId}${path}`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const exec = await post('/exec', { cmd: 'true', pty: { cols: 0, rows: 24 } })
    assert.equal(exec.status, 400)
    assert.match(((await exec.json()) as { message: string }).message, /^pty\.cols: expected an integer from 1 to 1000, got 0/)
    const handle = await sbx.commands.run('sleep 60', { background: true })
    const resize = await post(`/processes/${handle.pid}/resize`, { cols: 80, rows: 5000 })
    assert.equal(resize.status, 400)
    assert.match(((await resize.json()) as { message: string }).message, /^rows: expected an integer from 1 to 1000, got 5000/)
    const noTerminal = await post(`/processes/${handle.pid}/resize`, { cols: 80, rows: 24 })
    assert.equal(noTerminal.status, 409, 'a process without a terminal cannot be resized')
    await handle.kill()

    const session = await openSocket('cols=80&rows=24', { headers })
    assert.ok(isSession(session))
    session.ws.send(JSON.stringify({ type: 'resize', cols: 0, rows: 10 }))
    const error = await until('an error message for the bad resize', async () => session.texts.find((t) => t.type === 'error'))
    assert.match(error.message ?? '', /^cols: expected an integer from 1 to 1000, got 0/)
    session.ws.send(JSON.stringify({ type: 'resize', cols: 91, rows: 19 }))
    session.ws.send(Buffer.from('stty size; exit 6\n'))
    assert.equal(await session.closed, 1000)
    assert.match(session.output(), /19 91/)
    assert.deepEqual(session.texts.at(-1), { type: 'exit', exitCode: 6 })
    await nothingLeftIn(sbx)
  })

  it('a WebSocket closed mid-session hangs up the shell and everything it started', async () => {
    const session = await openSocket('cols=80&rows=24', { headers: { authorization: `Bearer ${stack.conn.apiKey}` } })
    assert.ok(isSession(session))
    // One job that ignores the hang-up, one in the foreground.
    session.ws.send(Buffer.from('nohup sleep 1001 >/dev/null 2>&1 &\nsleep 1002\n'))
    await until('both sleeps to run', async () => {
      const now = await processesIn(sbx)
      return now.some((p) => p.includes('sleep 1001')) && now.some((p) => p.includes('sleep 1002'))
    })
    session.ws.close()
    await nothingLeftIn(sbx)
  })

  /** The pid of the CLI (node) in a pane: the child of the pane's shell. */
  async function cliPid(pane: TmuxPane): Promise<number> {
    const shell = await pane.pid()
    return until('the CLI process', async () => {
      const children = (await readFile(`/proc/${shell}/task/${shell}/children`, 'utf8')).trim().split(/\s+/).filter(Boolean)
      for (const child of children) if ((await readFile(`/proc/${child}/cmdline`, 'utf8')).includes(cliMain)) return Number(child)
      return undefined
    })
  }
})

describe('terminals through a fleet agent (a server process and an agent process on loopback)', { skip, timeout: 300_000 }, () => {
  let dir: string
  let server: ServerProcess
  let agent: ResultPromise
  let sbx: Sandbox
  const panes: TmuxPane[] = []
  const conn = (): { apiUrl: string; apiKey: string } => ({ apiUrl: server.url, apiKey: server.apiKey })
  const cliInPane = cliInPanes(conn, () => dir, panes)

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-terminal-fleet-'))
    server = await startServerProcess({ dataDir: join(dir, 'server'), agentHost: '127.0.0.1' })
    agent = startAgentProcess({ server: server.agentAddress, token: server.token, dataDir: join(dir, 'agent') })
    await until('a live agent', async () => (await listAgents(conn())).some((a) => a.state === 'live'), 60_000)
    sbx = await Sandbox.create('debian', { ...conn(), timeoutMs: 10 * 60_000 })
  })
  afterEach(async () => {
    for (const pane of panes.splice(0)) await pane.close()
  })
  after(async () => {
    if (sbx) await sbx.kill().catch(() => undefined)
    await stopFleetProcesses(agent, server, dir)
  })

  it('shell over the fleet link: size, resize, Ctrl-C, exit 5; a closed WebSocket leaves nothing', async () => {
    const run = await cliInPane('shell', sbx.sandboxId)
    const { pane } = run
    await pane.until(/root@[^\s:]+:[^\n]*#\s*$/m)
    await pane.type('stty size')
    await pane.until(/^30 100\s*$/m)
    await pane.resize(90, 20)
    await pane.type('stty size')
    await pane.until(/^20 90\s*$/m)
    await pane.type('sleep 100')
    await until('sleep 100 to run', async () => (await processesIn(sbx)).some((p) => p.endsWith('sleep 100 ')))
    await pane.keys('C-c')
    await pane.type('echo "fleet-$((2+3))"; exit 5')
    assert.equal(await run.exitCode(), 5)
    assert.match(await pane.screen(), /^fleet-5\s*$/m)
    assert.equal((await run.stty()).after, (await run.stty()).before)
    await nothingLeftIn(sbx)

    const { url, protocols } = sbx.pty.socket({ cols: 80, rows: 24 })
    const ws = new WebSocket(url, protocols)
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
    ws.send(Buffer.from('sleep 1003\n'))
    await until('sleep 1003 to run', async () => (await processesIn(sbx)).some((p) => p.includes('sleep 1003')))
    ws.close()
    await nothingLeftIn(sbx)
  })
})
