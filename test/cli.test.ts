/**
 * The real `sandstorm` CLI (the built dist/src/cli/main.js, as a child process) against a real
 * stack, for the README's flow: run, create, exec, cp both ways, ls --json, rm, and exit codes.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { idPattern, type SandboxInfo } from '../src/shared/index.js'
import { cliMain, runCli, type CliResult } from './helpers/cli-process.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? false

describe('the sandstorm CLI end to end', { skip }, () => {
  let stack: Stack
  let localDir: string

  before(async () => {
    stack = await startStack()
    localDir = await mkdtemp(join(tmpdir(), 'sandstorm-cli-'))
  })
  after(async () => {
    await stack?.close()
    if (localDir) await rm(localDir, { recursive: true, force: true })
  })

  /** Runs the CLI with the stack's URL and key in its environment and stdin from /dev/null. */
  const cli = (...args: string[]): Promise<CliResult> => runCli(stack, ...args)


  let id = ''

  it("run -- python3 -c 'print(6*7)' prints 42, exits 0, and leaves no sandbox", async () => {
    const r = await cli('run', '--', 'python3', '-c', 'print(6*7)')
    assert.equal(r.stdout, '42\n', r.stderr)
    assert.equal(r.code, 0, r.stderr)
    const failing = await cli('run', '--', 'sh', '-c', 'echo bye >&2; exit 5')
    assert.equal(failing.code, 5)
    assert.match(failing.stderr, /bye/)
    // run exits once its sandboxes are marked for removal; the server destroys them right after.
    let left: SandboxInfo[] = []
    for (let i = 0; i < 100; i++) {
      left = JSON.parse((await cli('ls', '--json')).stdout) as SandboxInfo[]
      if (left.length === 0) break
      for (const s of left) assert.ok(Date.parse(s.expiresAt) <= Date.now(), `sandbox ${s.id} left by run is marked for removal`)
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    assert.deepEqual(left, [], 'the sandboxes of run are gone within 20 s')
  })

  it('create --template debian --memory 256 --cpus 1 --timeout 10m prints an id', async () => {
    const r = await cli('create', '--template', 'debian', '--memory', '256', '--cpus', '1', '--timeout', '10m')
    assert.equal(r.code, 0, r.stderr)
    id = r.stdout.trim()
    assert.match(id, idPattern)
    assert.equal(r.stdout, `${id}\n`)
  })

  it('exec streams stdout and stderr and exits with the command\'s code', async () => {
    const r = await cli('exec', id, '--', 'sh', '-c', 'echo out; echo err >&2; exit 3')
    assert.equal(r.stdout, 'out\n')
    assert.equal(r.stderr, 'err\n')
    assert.equal(r.code, 3)
    const ok = await cli('exec', id, '--', 'id', '-u')
    assert.deepEqual([ok.code, ok.stdout], [0, '0\n'])
    const asUser = await cli('exec', '--user', 'user', '--cwd', '/tmp', id, '--', 'sh', '-c', 'id -u; pwd')
    assert.deepEqual([asUser.code, asUser.stdout], [0, '1000\n/tmp\n'], asUser.stderr)
  })

  it('cp copies a file into the sandbox and back', async () => {
    const local = join(localDir, 'local.txt')
    const content = Buffer.concat([Buffer.from('hello from the host\n'), Buffer.from(Array.from({ length: 256 }, (_, i) => i))])
    await writeFile(local, content)
    const into = await cli('cp', local, `${id}:/root/local.txt`)
    assert.equal(into.code, 0, into.stderr)
    const inside = await cli('exec', id, '--', 'sh', '-c', 'wc -c < /root/local.txt')
    assert.equal(inside.stdout.trim(), String(content.length))
    const back = join(localDir, 'back.txt')
    const out = await cli('cp', `${id}:/root/local.txt`, back)
    assert.equal(out.code, 0, out.stderr)
    assert.deepEqual(await readFile(back), content)
    const missing = await cli('cp', `${id}:/root/none.txt`, join(localDir, 'none.txt'))
    assert.equal(missing.code, 3, missing.stderr)
    assert.match(missing.stderr, /none\.txt/)
  })

  it('ls --json parses and shows the sandbox with its limits', async () => {
    const r = await cli('ls', '--json')
    assert.equal(r.code, 0, r.stderr)
    const list = JSON.parse(r.stdout) as SandboxInfo[]
    const mine = list.find((s) => s.id === id)
    assert.ok(mine, `sandbox ${id} not in ${r.stdout}`)
    assert.equal(mine.state, 'running')
    assert.equal(mine.memoryMiB, 256)
    assert.equal(mine.cpus, 1)
    const table = await cli('ls')
    assert.match(table.stdout, new RegExp(`^${id}\\s+debian\\s+runc\\s+running`, 'm'))
  })

  it('rm destroys it; not found exits 3', async () => {
    const r = await cli('rm', id)
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(JSON.parse((await cli('ls', '--json')).stdout), [])
    const again = await cli('rm', id)
    assert.equal(again.code, 3)
    assert.match(again.stderr, new RegExp(id))
    const exec = await cli('exec', id, '--', 'true')
    assert.equal(exec.code, 3)
    const template = await cli('create', '--template', 'nope')
    assert.equal(template.code, 3)
    assert.match(template.stderr, /nope/)
  })

  it('bad usage exits 2 with a message', async () => {
    for (const args of [['create', '--memory', 'lots'], ['create', '--timeout', 'forever'], ['exec'], ['no-such-command'], ['cp', 'a', 'b']]) {
      const r = await cli(...args)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, /^sandstorm: /m, `${args.join(' ')}: ${r.stderr}`)
    }
    const wrongKey = spawn(process.execPath, [cliMain, 'ls'], {
      env: { ...process.env, SANDSTORM_URL: stack.conn.apiUrl, SANDSTORM_API_KEY: 'wrong' },
      stdio: ['ignore', 'ignore', 'ignore'],
    })
    assert.deepEqual(await once(wrongKey, 'close'), [4, null])
  })

  it('network: create with a policy, replace it, forward a port; bad flags exit 2 with the flag named', async () => {
    const made = await cli('create', '--deny-out', '0.0.0.0/0', '--allow-out', '198.19.1.0/24', '--private', '--json')
    assert.equal(made.code, 0, made.stderr)
    const info = JSON.parse(made.stdout) as SandboxInfo
    assert.deepEqual(info.network, { allowOut: ['198.19.1.0/24'], denyOut: ['0.0.0.0/0'], allowPublicTraffic: false })
    const replaced = await cli('network', info.id, '--no-internet')
    assert.deepEqual([replaced.code, replaced.stdout], [0, 'allow-out: -\ndeny-out: 0.0.0.0/0\n'], replaced.stderr)
    const none = await cli('create', '--network', 'none', '--json')
    assert.equal((JSON.parse(none.stdout) as SandboxInfo).network, 'none')
    for (const [args, message] of [
      [['create', '--allow-out', 'pypi.org'], /--allow-out: domain entries \(pypi\.org\) need denyOut to contain 0\.0\.0\.0\/0/],
      [['create', '--deny-out', '10.0.0.0/33'], /--deny-out\[0\]: expected an IPv4 address or CIDR/],
      [['create', '--network', 'bridge'], /--network: expected "none"/],
      [['create', '--network', 'none', '--private'], /--network none: expected no other network flag/],
      [['port-forward', info.id, '70000'], /PORT: expected a port from 1 to 65535/],
    ] as const) {
      const r = await cli(...args)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, message)
    }

    // port-forward: a local listener whose connections reach the sandbox's port.
    await cli('exec', info.id, '--', 'sh', '-c', 'cd /tmp && echo forwarded > index.html && setsid python3 -m http.server 8000 >/dev/null 2>&1 &')
    const forward = spawn(process.execPath, [cliMain, 'port-forward', info.id, '8000', '--local', '0'], {
      env: { ...process.env, SANDSTORM_URL: stack.conn.apiUrl, SANDSTORM_API_KEY: stack.conn.apiKey },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    try {
      const [line] = (await once(forward.stdout, 'data')) as [Buffer]
      const port = Number(/127\.0\.0\.1:(\d+) -> /.exec(line.toString())?.[1])
      assert.ok(port > 0, line.toString())
      let body = ''
      for (let i = 0; i < 50 && body !== 'forwarded\n'; i++) {
        body = await fetch(`http://127.0.0.1:${port}/index.html`).then((r) => r.text(), () => '')
        if (body !== 'forwarded\n') await new Promise((r) => setTimeout(r, 100))
      }
      assert.equal(body, 'forwarded\n')
    } finally {
      forward.kill('SIGINT')
      await once(forward, 'close')
    }
    await cli('rm', info.id)
    await cli('rm', (JSON.parse(none.stdout) as SandboxInfo).id)
  })
})
