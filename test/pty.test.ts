/**
 * Terminals at the agent API over real runc: a command on a terminal made by the sandbox's init,
 * resized, typed into, refused when asked badly, and asked for in a sandbox whose root replaced
 * /dev/ptmx; then the same through a remote agent over the fleet link. Nothing is left behind.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createLocalAgent, runAgent, type AgentApi, type AgentExecRequest, type RunningAgent } from '../src/agent/index.js'
import { startServer, type RunningServer } from '../src/server/index.js'
import { newId, SandstormError, silentLogger, type ProcessResult } from '../src/shared/index.js'
import { skipReason, templatesDir } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false

/** A command on a terminal: what it printed so far, a wait for what it will print, and its end. */
async function onTerminal(agent: AgentApi, id: string, req: Partial<AgentExecRequest> & { argv: string[] }) {
  const { pid } = await agent.exec(id, { env: {}, pty: { cols: 80, rows: 24 }, ...req })
  let output = ''
  let heard = () => undefined as void
  const result = (async (): Promise<ProcessResult> => {
    for await (const event of agent.follow(id, pid)) {
      if (event.type === 'stdout' || event.type === 'stderr') {
        output += Buffer.from(event.data, 'base64').toString()
        heard()
      }
      if (event.type === 'end') return event.result
    }
    throw new Error('the process ended without an end event')
  })()
  const ended = result.then(() => undefined, () => undefined)
  /** Resolves once the output matches; fails, showing the output, if the command ends first. */
  async function waitFor(pattern: RegExp): Promise<void> {
    while (!pattern.test(output)) {
      const more = new Promise<void>((resolve) => (heard = resolve))
      if ((await Promise.race([more.then(() => 'more'), ended.then(() => 'ended')])) === 'ended' && !pattern.test(output)) {
        throw new Error(`the command ended without printing ${pattern}; it printed ${JSON.stringify(output)}`)
      }
    }
  }
  const type = (text: string) => agent.writeStdin(id, pid, Buffer.from(text), false)
  return { pid, result, waitFor, type, output: () => output }
}

/** Runs a shell script (no terminal) to its end; its stdout. */
async function sh(agent: AgentApi, id: string, script: string): Promise<string> {
  const { pid } = await agent.exec(id, { argv: ['/bin/sh', '-c', script], env: {} })
  let out = ''
  for await (const event of agent.follow(id, pid)) if (event.type === 'stdout') out += Buffer.from(event.data, 'base64').toString()
  return out
}

/** Command lines of every process in the sandbox but its init and the listing shell itself. */
async function leftBehind(agent: AgentApi, id: string): Promise<string[]> {
  // The glob is expanded before the loop forks anything: only the shell itself is to be skipped.
  const listing = await sh(agent, id, 'for d in /proc/[0-9]*; do [ "${d#/proc/}" = $$ ] && continue; tr "\\0" " " < $d/cmdline 2>/dev/null; echo; done')
  return listing.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('/.sandstorm/init'))
}

/** Fails unless, within a bound, no process but the init and no terminal is left in the sandbox. */
async function assertNothingLeft(agent: AgentApi, id: string): Promise<void> {
  await until('no process left in the sandbox', async () => (await leftBehind(agent, id)).length === 0, 10_000).catch(async (err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(await leftBehind(agent, id))}`)
  })
  await until('no terminal left in the sandbox', async () => (await sh(agent, id, 'ls /dev/pts')).split(/\s+/).filter((n) => n && n !== 'ptmx').length === 0, 10_000)
}

const coded = (code: string, message: RegExp) => (e: unknown) => e instanceof SandstormError && e.code === code && message.test(e.message)

describe('terminals at the agent API (runc)', { skip }, () => {
  let dataDir: string
  let agent: AgentApi
  const id = newId('sb')

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'sandstorm-pty-'))
    agent = await createLocalAgent({ dataDir, templatesDir, logger: silentLogger() })
    await agent.create({ id, template: 'debian', memoryMiB: 256, cpus: 1, pidsMax: 256, diskMiB: 0, env: {}, network: { mode: 'none' } })
  })
  after(async () => {
    await agent?.destroy(id).catch(() => undefined)
    await agent?.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  it('runs a shell on a terminal: TERM, its tty and size, a resize, the exit code, listed as any process', async () => {
    const t = await onTerminal(agent, id, { argv: ['/bin/sh', '-i'], pty: { cols: 100, rows: 30 } })
    // Nothing typed yet: stdin stays open for the terminal without keepStdin.
    await t.type('echo "[$TERM] [$(stty size)] [$(tty)]"\n')
    await t.waitFor(/\[xterm-256color\] \[30 100\] \[\/dev\/pts\/\d+\]\r\n/)
    const listed = (await agent.processes(id)).find((p) => p.pid === t.pid)
    assert.deepEqual(listed?.argv, ['/bin/sh', '-i'])
    await agent.resizePty(id, t.pid, { cols: 132, rows: 43 })
    await t.type('echo "<$(stty size)>"\n')
    await t.waitFor(/<43 132>\r\n/)
    await t.type('exit 4\n')
    assert.equal((await t.result).exitCode, 4)
    await assert.rejects(agent.resizePty(id, t.pid, { cols: 80, rows: 24 }), coded('failed_precondition', /has ended: its terminal is gone/))
    await assertNothingLeft(agent, id)
  })

  it("keeps the request's own TERM", async () => {
    const t = await onTerminal(agent, id, { argv: ['/bin/sh', '-c', 'echo "[$TERM]"'], env: { TERM: 'vt100' } })
    assert.equal((await t.result).exitCode, 0)
    assert.equal(t.output(), '[vt100]\r\n')
  })

  it('gives a command of another user a terminal it owns', async () => {
    const t = await onTerminal(agent, id, { argv: ['/bin/sh', '-c', 'id -un; stat -c %U "$(tty)"'], user: 'nobody', cwd: '/' })
    assert.equal((await t.result).exitCode, 0)
    assert.equal(t.output(), 'nobody\r\nnobody\r\n')
  })

  it('refuses a terminal size out of 1..65535 before anything starts, naming the field', async () => {
    const before = (await agent.processes(id)).length
    const bad: [unknown, RegExp][] = [
      [{ cols: 0, rows: 24 }, /^pty\.cols: expected a whole number of character cells from 1 to 65535, got 0$/],
      [{ cols: 80, rows: 65536 }, /^pty\.rows: .* got 65536$/],
      [{ cols: 80.5, rows: 24 }, /^pty\.cols: .* got 80\.5$/],
      [{ rows: 24 }, /^pty\.cols: .* got nothing$/],
    ]
    for (const [pty, message] of bad) {
      await assert.rejects(agent.exec(id, { argv: ['/bin/true'], env: {}, pty: pty as { cols: number; rows: number } }), coded('invalid_argument', message), JSON.stringify(pty))
    }
    assert.equal((await agent.processes(id)).length, before, 'no process was started')
    await assertNothingLeft(agent, id)
  })

  it('refuses resizes of unknown processes, of processes without a terminal, and to bad sizes', async () => {
    await assert.rejects(agent.resizePty(id, 999_999, { cols: 80, rows: 24 }), coded('not_found', /process 999999 not found/))
    const { pid } = await agent.exec(id, { argv: ['/bin/sh', '-c', 'exec sleep 1000'], env: {}, keepStdin: true })
    try {
      await assert.rejects(agent.resizePty(id, pid, { cols: 80, rows: 24 }), coded('failed_precondition', /has no terminal: it was not started with pty/))
    } finally {
      await agent.signal(id, pid, 'SIGKILL')
    }
    const t = await onTerminal(agent, id, { argv: ['/bin/sh', '-c', 'echo up; exec sleep 1000'] })
    try {
      await t.waitFor(/up\r\n/)
      await assert.rejects(agent.resizePty(id, t.pid, { cols: 0, rows: 24 }), coded('invalid_argument', /^size\.cols: .* got 0$/))
      await assert.rejects(agent.resizePty(id, t.pid, { cols: 80, rows: 70_000 }), coded('invalid_argument', /^size\.rows: .* got 70000$/))
    } finally {
      await agent.signal(id, t.pid, 'SIGKILL')
    }
    assert.equal((await t.result).exitCode, 137)
    await assertNothingLeft(agent, id)
  })

  it('Ctrl-C stops the foreground command of a shell, Ctrl-D ends it, and a kill leaves nothing', async () => {
    const t = await onTerminal(agent, id, { argv: ['/bin/sh', '-i'] })
    await t.type(`sh -c 'echo st""arted; sleep 1003 & exec sleep 1000'\n`)
    await t.waitFor(/started\r\n/)
    await t.type('\x03')
    await t.type('echo $((6*7))-$?\n')
    await t.waitFor(/42-130\r\n/)
    // Ctrl-D on an empty line: the shell reads an end of file and exits.
    await t.type('\x04')
    assert.equal((await t.result).exitCode, 0)
    // The background sleep of the interrupted job was left running: the tree is still the command's.
    await agent.signal(id, t.pid, 'SIGKILL')
    await assertNothingLeft(agent, id)
  })

  it('bounds the terminals a sandbox holds: past 256 a request fails cleanly, and works again once they are let go', async () => {
    // The sandbox's own code takes every terminal of its devpts (bash keeps each master open).
    const holder = await agent.exec(id, { argv: ['bash', '-c', 'n=0; while [ $n -lt 300 ] && exec {fd}<>/dev/pts/ptmx; do n=$((n+1)); done 2>/dev/null; echo "held $n"; exec sleep 1000'], env: {} })
    let said = ''
    for await (const event of agent.follow(id, holder.pid)) {
      if (event.type === 'stdout') said += Buffer.from(event.data, 'base64').toString()
      if (said.includes('\n') || event.type === 'end') break
    }
    try {
      assert.equal(said, 'held 256\n')
      await assert.rejects(agent.exec(id, { argv: ['/bin/true'], env: {}, pty: { cols: 80, rows: 24 } }), coded('failed_precondition', /could not make a terminal .*holds 256 terminals already/))
    } finally {
      await agent.signal(id, holder.pid, 'SIGKILL')
    }
    await assertNothingLeft(agent, id)
    const t = await onTerminal(agent, id, { argv: ['tty'] })
    assert.equal((await t.result).exitCode, 0)
    assert.match(t.output(), /^\/dev\/pts\/\d+\r\n$/)
  })

  for (const [what, replace] of [
    ['a FIFO', 'mkfifo /dev/ptmx'],
    ['a regular file', 'echo junk > /dev/ptmx'],
    ['a link to /dev/null', 'ln -s null /dev/ptmx'],
  ] as const) {
    it(`still gets a real terminal, without hanging, when the sandbox's root replaced /dev/ptmx with ${what}`, async () => {
      await sh(agent, id, `rm -f /dev/ptmx && ${replace}`)
      try {
        const t = await onTerminal(agent, id, { argv: ['/bin/sh', '-c', 'tty; stat -c %F "$(tty)"'] })
        assert.equal((await t.result).exitCode, 0)
        assert.match(t.output(), /^\/dev\/pts\/\d+\r\ncharacter special file\r\n$/)
      } finally {
        await sh(agent, id, 'rm -f /dev/ptmx && ln -s pts/ptmx /dev/ptmx')
      }
      await assertNothingLeft(agent, id)
    })
  }
})

describe('terminals through a remote agent (fleet link)', { skip }, () => {
  let dir: string
  let server: RunningServer
  let remote: RunningAgent
  let sandboxId = ''
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${server.url}${path}`, { ...init, headers: { authorization: `Bearer ${server.apiKey}`, 'content-type': 'application/json', ...init.headers } })

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-pty-fleet-'))
    server = await startServer({ dataDir: join(dir, 'server'), port: 0, logger: silentLogger(), fleet: { host: '127.0.0.1', port: 0, insecure: true } })
    remote = await runAgent({ serverUrl: `127.0.0.1:${server.fleet!.port}`, token: server.fleet!.joinToken, dataDir: join(dir, 'agent'), templatesDir, insecure: true, logger: silentLogger(), heartbeatMs: 200 })
    await until('a live agent', async () => {
      const res = await api('/v1/agents')
      return ((await res.json()) as { agents: { state: string }[] }).agents.some((a) => a.state === 'live')
    })
  })
  after(async () => {
    if (sandboxId) await api(`/v1/sandboxes/${sandboxId}`, { method: 'DELETE' }).catch(() => undefined)
    await remote?.close()
    await server?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('starts a command on a terminal, types into it, resizes it and hears its end', async () => {
    const created = await api('/v1/sandboxes', { method: 'POST', body: JSON.stringify({ template: 'debian' }) })
    assert.equal(created.status, 201)
    sandboxId = ((await created.json()) as { id: string }).id
    const started = await api(`/v1/sandboxes/${sandboxId}/exec`, { method: 'POST', body: JSON.stringify({ argv: ['/bin/sh', '-i'], background: true, pty: { cols: 90, rows: 20 } }) })
    assert.equal(started.status, 201)
    const { pid } = (await started.json()) as { pid: number }
    const events = await api(`/v1/sandboxes/${sandboxId}/processes/${pid}/events`)
    assert.equal(events.status, 200)
    const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader()
    let output = ''
    let pending = ''
    let end: ProcessResult | undefined
    /** Reads events until `reached` holds; fails if the stream ends first. */
    const readUntil = async (what: string, reached: () => boolean) => {
      while (!reached()) {
        const { value, done } = await reader.read()
        if (done) assert.fail(`the event stream ended before ${what}; the output was ${JSON.stringify(output)}`)
        pending += value
        const lines = pending.split('\n')
        pending = lines.pop()!
        for (const line of lines.filter(Boolean)) {
          const event = JSON.parse(line) as { type: string; data?: string; result?: ProcessResult }
          if (event.type === 'stdout' || event.type === 'stderr') output += Buffer.from(event.data!, 'base64').toString()
          if (event.type === 'end') end = event.result
        }
      }
    }
    const type = async (text: string) => {
      const res = await api(`/v1/sandboxes/${sandboxId}/processes/${pid}/stdin`, { method: 'POST', body: JSON.stringify({ dataBase64: Buffer.from(text).toString('base64') }) })
      assert.equal(res.status, 204)
    }
    await type('echo "[$(stty size)] [$TERM]"\n')
    await readUntil('the size and TERM', () => /\[20 90\] \[xterm-256color\]\r\n/.test(output))
    const resized = await api(`/v1/sandboxes/${sandboxId}/processes/${pid}/resize`, { method: 'POST', body: JSON.stringify({ cols: 120, rows: 33 }) })
    assert.equal(resized.status, 204)
    await type('echo "<$(stty size)>"; exit 6\n')
    await readUntil('its end', () => end !== undefined)
    assert.match(output, /<33 120>\r\n/)
    assert.equal(end!.exitCode, 6)
    // The agent's refusals cross the link with their codes.
    const late = await api(`/v1/sandboxes/${sandboxId}/processes/${pid}/resize`, { method: 'POST', body: JSON.stringify({ cols: 80, rows: 24 }) })
    assert.ok(late.status >= 400 && late.status < 500, `a resize of an ended process is refused with a 4xx, got ${late.status}`)
    assert.match(await late.text(), /terminal is gone/)
    const unknown = await api(`/v1/sandboxes/${sandboxId}/processes/999999/resize`, { method: 'POST', body: JSON.stringify({ cols: 80, rows: 24 }) })
    assert.equal(unknown.status, 404)
    assert.ok((await remote.local.list()).some((s) => s.id === sandboxId), 'the sandbox (and so its terminal) is on the remote agent')
  })
})
