/**
 * Template start commands end to end: a golden template built from debian with a start command
 * (a small HTTP server) is ready the moment a create returns — from the Sandstorm SDK, from a
 * warm pool, through E2B's create with `envs`, and again after a snapshot restore; a golden
 * version made on it keeps it. A start command that exits or is never ready fails the create,
 * naming it and its last output, and leaves nothing behind.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { Sandbox as E2bSandbox } from 'e2b'
import { execa } from 'execa'
import { pino } from 'pino'
import { buildGoldenTemplate, listTemplates, Sandbox, setPool, waitForPool, deletePool } from '@sandstorm/sdk'
import type { TemplateStartInput } from '../src/shared/index.js'
import { useStackForE2b } from './helpers/e2b-env.js'
import { ownTemplatesDir } from './helpers/fleet-processes.js'
import { leftoversOf } from './helpers/leftovers.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? false
const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url))

/** A server that records who started it, then answers GET /ready with 200. */
const serverScript = String.raw`
import http.server, json, os
info = {'uid': os.getuid(), 'cwd': os.getcwd(), 'greeting': os.environ.get('GREETING'), 'fromCreate': os.environ.get('FROM_CREATE')}
with open('/tmp/started.json', 'w') as f:
    json.dump(info, f)
print('listening on 8080', flush=True)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == '/ready' else 404)
        self.end_headers()
        self.wfile.write(b'ready')
    def log_message(self, *args):
        pass
http.server.HTTPServer(('0.0.0.0', 8080), Handler).serve_forever()
`

const webStart: TemplateStartInput = {
  cmd: 'exec python3 /opt/app/server.py',
  user: 'user',
  cwd: '/tmp',
  env: { GREETING: 'hello' },
  ready: { type: 'http', port: 8080, path: '/ready' },
}

/** One GET inside the sandbox, no retry: the status the server gives, or the error. */
const probe = "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/ready', timeout=5).status)\""

describe('template start commands', { skip }, () => {
  let stack: Stack
  let templatesDir: string
  const logLines: string[] = []
  const conn = () => stack.conn

  const create = async (body: object): Promise<Response> =>
    fetch(`${stack.server.url}/v1/sandboxes`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.server.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
  const sh = async (sb: Sandbox, cmd: string) => {
    const r = await sb.commands.run(cmd, { ...conn() })
    assert.equal(r.exitCode, 0, `${cmd}: ${r.stderr}`)
    return r.stdout
  }
  /** Ids of the sandboxes the agent has started (from its log: a create that failed leaves no other trace of its id). */
  const startedIds = () => [
    ...new Set(
      logLines
        .map((l) => JSON.parse(l) as { msg: string; sandboxId?: string })
        .filter((l) => l.msg === 'sandbox started' && l.sandboxId)
        .map((l) => l.sandboxId!),
    ),
  ]

  before(async () => {
    templatesDir = await ownTemplatesDir(await mkdtemp(join(tmpdir(), 'sandstorm-start-templates-')))
    const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (logLines.push(...chunk.toString().split('\n').filter(Boolean)), done()) })
    stack = await startStack({ templatesDir, logger: pino({ level: 'info' }, sink) })
    await buildGoldenTemplate('web', { from: 'debian', steps: [`mkdir -p /opt/app && cat > /opt/app/server.py <<'EOF'\n${serverScript}\nEOF`], start: webStart }, conn())
  })
  after(async () => {
    await stack?.close()
    await rm(templatesDir, { recursive: true, force: true })
  })

  it('lists the start command with the template, defaults filled in', async () => {
    const web = (await listTemplates(conn())).find((t) => t.name === 'web')
    assert.deepEqual(web?.start, { ...webStart, readyTimeoutMs: 60_000 })
    assert.equal((await listTemplates(conn())).find((t) => t.name === 'debian')?.start, undefined)
  })

  it('a create returns once the start command is ready, as its user, cwd and env, with the sandbox env', async () => {
    const sb = await Sandbox.create('web', { ...conn(), env: { FROM_CREATE: 'sandbox-env' } })
    try {
      assert.equal(await sh(sb, probe), '200\n')
      assert.deepEqual(JSON.parse(await sh(sb, 'cat /tmp/started.json')), { uid: 1000, cwd: '/tmp', greeting: 'hello', fromCreate: 'sandbox-env' })
      const running = (await sb.commands.list({ ...conn() })).filter((p) => p.running)
      assert.ok(
        running.some((p) => p.argv.join(' ') === '/bin/sh -c exec python3 /opt/app/server.py'),
        `expected the start command among ${JSON.stringify(running.map((p) => p.argv))}`,
      )
    } finally {
      await sb.kill(conn())
    }
  })

  it('E2B create with envs: the start command sees them', async () => {
    useStackForE2b(stack)
    const sbx = await E2bSandbox.create('web', { envs: { FROM_CREATE: 'e2b-envs' } })
    try {
      assert.equal((await sbx.commands.run(probe)).stdout, '200\n')
      assert.equal(JSON.parse((await sbx.commands.run('cat /tmp/started.json')).stdout).fromCreate, 'e2b-envs')
    } finally {
      await sbx.kill()
    }
  })

  it('a pooled sandbox runs it before it counts as ready: the hand-over is ready at once', async () => {
    await setPool('web', { ...conn(), min: 1, max: 1 })
    try {
      await waitForPool('web', { ...conn(), ready: 1 })
      const res = await create({ template: 'web' })
      assert.equal(res.status, 201, await res.clone().text())
      const body = (await res.json()) as { id: string; source: string }
      assert.equal(body.source, 'pool')
      const sb = await Sandbox.connect(body.id, conn())
      assert.equal(await sh(sb, probe), '200\n')
      await sb.kill(conn())
    } finally {
      await deletePool('web', conn())
    }
  })

  it('a snapshot restore starts fresh processes, and the start command again', async () => {
    const sb = await Sandbox.create('web', conn())
    try {
      const snap = await sb.snapshot({ ...conn() })
      await sb.restore(snap.id, conn())
      assert.equal(await sh(sb, probe), '200\n')
    } finally {
      await sb.kill(conn())
    }
  })

  it('a golden version made on it keeps its start command', async () => {
    const { template } = await buildGoldenTemplate('web-child', { from: 'web', steps: ['echo child > /opt/app/child'] }, conn())
    assert.deepEqual(template.start, { ...webStart, readyTimeoutMs: 60_000 })
    const sb = await Sandbox.create('web-child', conn())
    try {
      assert.equal(await sh(sb, `cat /opt/app/child && ${probe}`), 'child\n200\n')
    } finally {
      await sb.kill(conn())
    }
  })

  it('a pool fill runs its start command at the lowest CPU weight, and a sandbox in use gets the normal one', async () => {
    // The start command writes the cpu.shares of its own cgroup (the sandbox's, through its cgroup
    // namespace) as it starts; a pooled sandbox must have yielded then, and hold the normal
    // weight by the hand-over. A plain create never yields.
    const start: TemplateStartInput = { cmd: 'cat /sys/fs/cgroup/cpu/cpu.shares > /tmp/shares-at-start; exec sleep 600', ready: { type: 'command', cmd: 'test -s /tmp/shares-at-start' } }
    await buildGoldenTemplate('weighed', { from: 'debian', steps: ['true'], start }, conn())
    const sharesOf = async (sb: Sandbox) => (await sh(sb, 'cat /tmp/shares-at-start /sys/fs/cgroup/cpu/cpu.shares')).split('\n').filter(Boolean)
    const plain = await Sandbox.create('weighed', conn())
    try {
      assert.deepEqual(await sharesOf(plain), ['1024', '1024'])
    } finally {
      await plain.kill(conn())
    }
    await setPool('weighed', { ...conn(), min: 1, max: 1 })
    try {
      await waitForPool('weighed', { ...conn(), ready: 1 })
      const res = await create({ template: 'weighed' })
      const body = (await res.json()) as { id: string; source: string }
      assert.equal(body.source, 'pool')
      const sb = await Sandbox.connect(body.id, conn())
      assert.deepEqual(await sharesOf(sb), ['2', '1024'])
      await sb.kill(conn())
    } finally {
      await deletePool('weighed', conn())
    }
  })

  it('a start command that exits 0 leaving a daemon behind is ready when its check passes', async () => {
    const start: TemplateStartInput = { cmd: 'python3 /opt/app/server.py >/tmp/server.log 2>&1 &', ready: { type: 'http', port: 8080, path: '/ready' } }
    await buildGoldenTemplate('daemon', { from: 'web', steps: ['true'], start }, conn())
    const sb = await Sandbox.create('daemon', conn())
    try {
      assert.equal(await sh(sb, probe), '200\n')
    } finally {
      await sb.kill(conn())
    }
  })

  it('a start command that exits fails the create, naming it and its output; nothing is left', async () => {
    await buildGoldenTemplate(
      'exits',
      {
        from: 'debian',
        steps: ['true'],
        start: { cmd: 'echo starting up; echo "config file missing" >&2; exit 3', ready: { type: 'http', port: 8080 } },
      },
      conn(),
    )
    const before = new Set(startedIds())
    const res = await create({ template: 'exits' })
    assert.equal(res.status, 409)
    const body = (await res.json()) as { code: string; message: string }
    assert.equal(body.code, 'failed_precondition')
    assert.match(body.message, /template "exits": start command `echo starting up; .*exit 3` exited with 3 before its ready check \(GET http:\/\/127\.0\.0\.1:8080\/\) passed/)
    assert.match(body.message, /starting up\nconfig file missing/)
    await assertNothingLeft(before)
  })

  it('a start command that is never ready fails the create after its timeout; nothing is left', async () => {
    await buildGoldenTemplate(
      'never-ready',
      { from: 'debian', steps: ['true'], start: { cmd: 'echo waiting; exec sleep 1000', ready: { type: 'command', cmd: 'test -e /tmp/never' }, readyTimeoutMs: 1500 } },
      conn(),
    )
    const before = new Set(startedIds())
    const res = await create({ template: 'never-ready' })
    assert.equal(res.status, 504)
    const body = (await res.json()) as { code: string; message: string }
    assert.equal(body.code, 'deadline_exceeded')
    assert.match(body.message, /start command `echo waiting; exec sleep 1000` was not ready within 1500 ms: expected its ready check \(`test -e \/tmp\/never`\) to pass; its last output:\nwaiting/)
    await assertNothingLeft(before)
  })

  it('the CLI builds a template with a start command, and a create through it waits for it', async () => {
    const cli = (...args: string[]) => execa('node', [main, '--url', stack.server.url, '--api-key', stack.server.apiKey, ...args], { reject: false })
    const built = await cli('template', 'build', 'web-cli', '--from', 'web', '--run', 'true', '--start', 'exec python3 /opt/app/server.py', '--start-user', 'user', '--ready-http', '8080/ready', '--ready-timeout', '45s', '--json')
    assert.equal(built.exitCode, 0, built.stderr)
    assert.deepEqual((JSON.parse(built.stdout) as { start: unknown }).start, { cmd: 'exec python3 /opt/app/server.py', user: 'user', env: {}, ready: { type: 'http', port: 8080, path: '/ready' }, readyTimeoutMs: 45_000 })
    const created = await cli('create', '--template', 'web-cli')
    assert.equal(created.exitCode, 0, created.stderr)
    const sb = await Sandbox.connect(created.stdout.trim(), conn())
    try {
      assert.equal(await sh(sb, probe), '200\n')
    } finally {
      await sb.kill(conn())
    }
  })

  it('refuses a malformed start command with a 400 naming the field', async () => {
    const res = await fetch(`${stack.server.url}/v1/templates/bad/build`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.server.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ from: 'debian', steps: ['true'], start: { cmd: 'x', ready: { type: 'http', port: 70000 } } }),
    })
    assert.equal(res.status, 400)
    assert.match(((await res.json()) as { message: string }).message, /start\.ready\.port/)
  })

  /** The sandbox the failed create started is gone: from the agent, the catalog and the host. */
  async function assertNothingLeft(before: Set<string>): Promise<void> {
    const ids = startedIds().filter((id) => !before.has(id))
    assert.equal(ids.length, 1, `expected the agent to have started one sandbox, found ${ids.join(', ') || 'none'}`)
    const id = ids[0]!
    assert.ok(!(await stack.agent.list()).some((s) => s.id === id), 'the agent still holds it')
    assert.deepEqual(await Sandbox.list(conn()), [])
    assert.deepEqual(await leftoversOf(stack.dataDir, id), [])
  }
})
