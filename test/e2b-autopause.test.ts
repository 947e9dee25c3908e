/**
 * The unmodified `e2b` SDK against a real Sandstorm (server, local agent, runc): auto-pause at the
 * timeout (`lifecycle.onTimeout: 'pause'`), connect resuming it, and `autoResume` waking a paused
 * sandbox on an envd call or on a request to one of its ports through the server's ingress.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { request } from 'node:http'
import { after, before, describe, test } from 'node:test'
import { NotFoundError, Sandbox, TimeoutError } from 'e2b'
import { useStackForE2b } from './helpers/e2b-env.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason()

/** GET / of `host` (as getHost built it) through the server, as a browser resolving *.localhost to loopback would. */
function get(stack: Stack, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const port = Number(new URL(stack.server.url).port)
    request({ host: '127.0.0.1', port, path: '/', headers: { host }, setHost: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
      .on('error', reject)
      .end()
  })
}

/** Waits until the sandbox reports `state`. */
const stateOf = (id: string, state: 'paused' | 'running') => until(`sandbox ${id} ${state}`, async () => (await Sandbox.getInfo(id)).state === state, 60_000)

describe('e2b SDK: auto-pause and auto-resume', { skip: skip ?? false }, () => {
  let stack: Stack
  const started: Sandbox[] = []
  const track = (sbx: Sandbox): Sandbox => (started.push(sbx), sbx)

  before(async () => {
    stack = await startStack()
    useStackForE2b(stack)
  })
  after(async () => {
    for (const sbx of started) await Sandbox.kill(sbx.sandboxId).catch(() => undefined)
    await stack?.close()
  })

  test("onTimeout 'pause': paused at its timeout, not killed; envd answers as E2B's for a paused one; connect resumes it with its processes and files", async () => {
    // Its short timeout is set once the setup is done: a pause in the midst of it would cut a call.
    const sbx = track(await Sandbox.create({ timeoutMs: 600_000, lifecycle: { onTimeout: 'pause' } }))
    assert.deepEqual((await sbx.getInfo()).lifecycle, { onTimeout: 'pause', autoResume: false })
    await sbx.files.write('/home/user/kept.txt', 'kept across the pause')
    const sleeper = await sbx.commands.run('sleep 600', { background: true })
    await sbx.setTimeout(1_000)

    await stateOf(sbx.sandboxId, 'paused')
    const listed = await Sandbox.list({ query: { state: ['paused'] } }).nextItems()
    assert.ok(listed.some((s) => s.sandboxId === sbx.sandboxId), 'listed as paused')
    const info = await sbx.getInfo()
    assert.ok(info.endAt.getTime() - Date.now() > 24 * 3600_000, 'a paused sandbox is kept long, as a manual pause is')

    // Without autoResume, envd on a paused sandbox answers what E2B's proxy answers (502 / unavailable).
    await assert.rejects(sbx.commands.run('true'), NotFoundError)
    await assert.rejects(sbx.files.read('/home/user/kept.txt'), TimeoutError)
    assert.equal((await sbx.getInfo()).state, 'paused', 'no call woke it')

    const resumed = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 120_000 })
    assert.equal((await resumed.getInfo()).state, 'running')
    assert.equal(await resumed.files.read('/home/user/kept.txt'), 'kept across the pause')
    const pids = (await resumed.commands.list()).map((p) => p.pid)
    assert.ok(pids.includes(sleeper.pid), `the background command (pid ${sleeper.pid}) still runs: ${pids.join(', ')}`)
    assert.equal((await resumed.commands.run(`kill -0 ${sleeper.pid} && echo alive`)).stdout, 'alive\n')
  })

  test('autoResume: a command through envd wakes a paused sandbox, and its timeout starts again', async () => {
    const sbx = track(await Sandbox.create({ timeoutMs: 2_000, lifecycle: { onTimeout: 'pause', autoResume: true } }))
    assert.deepEqual((await sbx.getInfo()).lifecycle, { onTimeout: 'pause', autoResume: true })
    await sbx.files.write('/home/user/note.txt', 'awake')
    await stateOf(sbx.sandboxId, 'paused')

    assert.equal((await sbx.commands.run('cat /home/user/note.txt')).stdout, 'awake')
    // Woken with its own timeout (2 s), it pauses again when that is up: no connect needed.
    await stateOf(sbx.sandboxId, 'paused')
    assert.equal(await sbx.files.read('/home/user/note.txt'), 'awake', 'a file read wakes it too')
  })

  test('autoResume: a request to a port served in the sandbox wakes it through the ingress', async () => {
    const sbx = track(await Sandbox.create({ timeoutMs: 60_000, lifecycle: { onTimeout: 'pause', autoResume: true } }))
    // A daemon left by a finished command: a background command's stream would be cut by the pause,
    // and the SDK's /health probe that follows is traffic that wakes an autoResume sandbox (for its
    // whole 60 s), as E2B's proxy would, before the port's request is sent.
    await sbx.commands.run('cd /tmp && echo served > index.html && (python3 -m http.server 8000 >/dev/null 2>&1 &)')
    const host = sbx.getHost(8000)
    await until('the server in the sandbox', async () => (await get(stack, host)).status === 200)
    await sbx.setTimeout(1_000)
    await stateOf(sbx.sandboxId, 'paused')

    const answer = await get(stack, host)
    assert.deepEqual(answer, { status: 200, body: 'served\n' })
    const info = await Sandbox.getInfo(sbx.sandboxId)
    // Woken with the lifetime it was created with (60 s), not the last second it was given.
    assert.equal(info.state, 'running')
    assert.ok(info.endAt.getTime() - Date.now() > 30_000, `woken for its 60 s, ends in ${info.endAt.getTime() - Date.now()} ms`)
  })

  test('without autoResume, a port of a paused sandbox answers 502 and the sandbox stays paused', async () => {
    const sbx = track(await Sandbox.create({ timeoutMs: 60_000, lifecycle: { onTimeout: 'pause' } }))
    await sbx.commands.run('cd /tmp && echo served > index.html && python3 -m http.server 8000 >/dev/null 2>&1', { background: true })
    const host = sbx.getHost(8000)
    await until('the server in the sandbox', async () => (await get(stack, host)).status === 200)
    await sbx.pause()
    assert.equal((await get(stack, host)).status, 502)
    assert.equal((await sbx.getInfo()).state, 'paused')
  })

  test('bad input: autoResume without onTimeout pause is a 400 naming the field', async () => {
    const res = await fetch(`${stack.server.url}/v2/sandboxes`, {
      method: 'POST',
      headers: { 'x-api-key': process.env.E2B_API_KEY!, 'content-type': 'application/json' },
      body: JSON.stringify({ templateID: 'base', autoResume: { enabled: true } }),
    })
    assert.equal(res.status, 400)
    assert.match(((await res.json()) as { message: string }).message, /^autoResume\.enabled: expected it only with autoPause true/)
  })

  test('the policy is kept in the catalog: a restarted server still pauses, and wakes, the sandbox', async () => {
    const sbx = track(await Sandbox.create({ timeoutMs: 600_000, lifecycle: { onTimeout: 'pause', autoResume: true } }))
    await sbx.files.write('/home/user/r.txt', 'restarted')
    await stack.stop()
    stack = await stack.restart()
    useStackForE2b(stack)
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.deepEqual((await again.getInfo()).lifecycle, { onTimeout: 'pause', autoResume: true })
    await again.setTimeout(1_000)
    await stateOf(sbx.sandboxId, 'paused')
    assert.equal((await again.commands.run('cat /home/user/r.txt')).stdout, 'restarted')
  })
})

describe('e2b SDK: a paused qemu machine is written to disk and comes back whole', { skip: skip ?? (existsSync('/usr/bin/qemu-system-x86_64') ? false : 'qemu-system-x86 is not installed'), timeout: 15 * 60_000 }, () => {
  let stack: Stack
  const started: string[] = []

  before(async () => {
    stack = await startStack({ defaultRuntime: 'qemu', hibernateAfterMs: 500 })
    useStackForE2b(stack)
  })
  after(async () => {
    for (const id of started) await Sandbox.kill(id).catch(() => undefined)
    await stack?.close()
  })

  /** How many processes named `name` run in the sandbox. */
  const running = async (sbx: Sandbox, name: string) => Number((await sbx.commands.run(`cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^${name}$' || true`)).stdout.trim())
  /** Whether the agent runs a VM for the sandbox. */
  const hasVm = async (id: string) => (await stack.agent.list()).some((s) => s.id === id)

  test('paused a while, its VM is stopped (RAM freed) and its save hidden; connect and autoResume bring it back with its processes', async () => {
    const sbx = await Sandbox.create('debian', { timeoutMs: 600_000, lifecycle: { onTimeout: 'pause', autoResume: true } })
    started.push(sbx.sandboxId)
    // Left running by a command that ends: no stream stays open (a stream cut by the pause makes the
    // SDK probe /health, and with autoResume that probe is traffic that wakes the sandbox).
    await sbx.commands.run('sleep 3600 >/dev/null 2>&1 &')
    // Through a command: envd's file writes stream stdin, which the qemu guest agent does not take.
    await sbx.commands.run('echo kept > /home/user/kept.txt')

    await sbx.pause()
    await until('the paused machine to be written to disk', async () => !(await hasVm(sbx.sandboxId)), 120_000)
    assert.equal((await sbx.getInfo()).state, 'paused')
    assert.deepEqual(await Sandbox.listSnapshots({ sandboxId: sbx.sandboxId }).nextItems(), [], 'its save on disk is no snapshot of the user\'s')

    const back = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 600_000 })
    assert.equal((await back.getInfo()).state, 'running')
    assert.equal(await hasVm(sbx.sandboxId), true)
    assert.equal(await running(back, 'sleep'), 1, 'the sleep started before the pause runs on: memory came back')
    assert.equal((await back.commands.run('cat /home/user/kept.txt')).stdout, 'kept\n')

    // Written to disk a second time, then woken by a command (autoResume).
    await back.pause()
    await until('the machine to be written to disk again', async () => !(await hasVm(sbx.sandboxId)), 120_000)
    assert.equal(await running(back, 'sleep'), 1)
    assert.equal((await back.getInfo()).state, 'running')
    await back.commands.run('pkill -x sleep || kill $(pidof sleep) || true')

    await back.kill()
    const saves = (await stack.agent.snapshots!.list()).filter((s) => s.sandboxId === sbx.sandboxId)
    assert.deepEqual(saves, [], 'its saves go with it')
  })
})
