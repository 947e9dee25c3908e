import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import { startFakeApi, type FakeApi } from '@sandstorm/sdk/testing'

const mainPath = fileURLToPath(new URL('./main.js', import.meta.url))

interface Ran {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs the real CLI in a child process against the fake server. */
async function sandstorm(fake: FakeApi, args: string[], input?: string | Buffer, env: Record<string, string> = {}): Promise<Ran> {
  const child = spawn(process.execPath, [mainPath, ...args], {
    env: { ...process.env, SANDSTORM_URL: fake.url, SANDSTORM_API_KEY: fake.apiKey, SANDSTORM_DATA_DIR: '/nonexistent', ...env },
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  })
  if (input !== undefined) child.stdin!.end(input)
  const out: Buffer[] = []
  const err: Buffer[] = []
  child.stdout!.on('data', (d: Buffer) => out.push(d))
  child.stderr!.on('data', (d: Buffer) => err.push(d))
  const [code] = (await once(child, 'close')) as [number | null]
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }
}

async function withFake(fn: (fake: FakeApi) => Promise<void>): Promise<void> {
  const fake = await startFakeApi()
  try {
    await fn(fake)
  } finally {
    await fake.close()
  }
}

test('create prints the id only, or JSON; ls, timeout and rm work on it', () =>
  withFake(async (fake) => {
    const created = await sandstorm(fake, ['create', '--memory', '256', '--timeout', '10m', '--label', 'team=a', '--env', 'A=1=2'])
    assert.equal(created.code, 0, created.stderr)
    const id = created.stdout.trim()
    assert.match(id, /^sb-[0-9]{16}$/)
    assert.deepEqual(fake.sandboxes.get(id)?.labels, { team: 'a' })
    assert.equal(fake.sandboxes.get(id)?.memoryMiB, 256)

    const json = await sandstorm(fake, ['create', '--json', '--cpus', '0.5'])
    assert.equal((JSON.parse(json.stdout) as { cpus: number }).cpus, 0.5)

    const ls = await sandstorm(fake, ['ls', '--label', 'team=a'])
    assert.equal(ls.code, 0)
    const lines = ls.stdout.trim().split('\n')
    assert.match(lines[0]!, /^ID\s+TEMPLATE\s+RUNTIME\s+STATE\s+MEMORY\s+CPUS\s+AGE\s+EXPIRES$/)
    assert.equal(lines.length, 2)
    assert.match(lines[1]!, new RegExp(`^${id}\\s+debian\\s+\\S+\\s+running\\s+256MiB\\s+1\\s+\\d+s\\s+in \\d+m$`))
    const lsJson = JSON.parse((await sandstorm(fake, ['ls', '--json'])).stdout) as unknown[]
    assert.equal(lsJson.length, 2)

    const t = await sandstorm(fake, ['timeout', id, '2h'])
    assert.equal(t.code, 0)
    assert.ok(Date.parse(t.stdout.trim()) > Date.now() + 3_600_000)

    assert.equal((await sandstorm(fake, ['rm', id])).code, 0)
    assert.equal(fake.sandboxes.has(id), false)
    const again = await sandstorm(fake, ['rm', id])
    assert.equal(again.code, 3)
    assert.equal(again.stderr, `sandstorm: no sandbox "${id}"\n`)
  }))

test('exec streams output and exits with the command code; --timeout exits 124', () =>
  withFake(async (fake) => {
    const id = (await sandstorm(fake, ['create'])).stdout.trim()
    const ok = await sandstorm(fake, ['exec', id, '--env', 'X=1', '--cwd', '/tmp', '--', 'echo', 'hi', 'there'])
    assert.equal(ok.code, 0, ok.stderr)
    assert.equal(ok.stdout, 'hi there\n')
    assert.deepEqual(fake.execBodies.at(-1)?.argv, ['echo', 'hi', 'there'])
    assert.deepEqual(fake.execBodies.at(-1)?.env, { X: '1' })

    const failed = await sandstorm(fake, ['exec', id, '--', 'fail'])
    assert.equal(failed.code, 3)
    assert.equal(failed.stdout, 'partial\n')
    assert.equal(failed.stderr, 'boom\n')

    const slow = await sandstorm(fake, ['exec', id, '--timeout', '50ms', '--', 'hang'])
    assert.equal(slow.code, 124)
    assert.match(slow.stderr, /^sandstorm: the command timed out/)
    assert.equal(fake.execBodies.at(-1)?.timeoutMs, 50)
  }))

test('exec --no-stdin runs in the foreground with the same results', () =>
  withFake(async (fake) => {
    const id = (await sandstorm(fake, ['create'])).stdout.trim()
    const ok = await sandstorm(fake, ['exec', '--no-stdin', id, '--', 'utf8split'])
    assert.equal(ok.code, 0, ok.stderr)
    assert.equal(ok.stdout, 'é€\n')
    assert.equal(fake.execBodies.at(-1)?.background, undefined)
    assert.equal((await sandstorm(fake, ['exec', '--no-stdin', id, '--', 'fail'])).code, 3)
    const slow = await sandstorm(fake, ['exec', '--no-stdin', '--timeout', '1s', id, '--', 'hang'])
    assert.equal(slow.code, 124)
    const run = await sandstorm(fake, ['run', '--no-stdin', '--', 'echo', '42'])
    assert.equal(run.stdout, '42\n')
  }))

test('exec passes stdin through when it is not a terminal', () =>
  withFake(async (fake) => {
    const id = (await sandstorm(fake, ['create'])).stdout.trim()
    const r = await sandstorm(fake, ['exec', id, '--', 'cat'], 'piped in\n')
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, 'piped in\n')
  }))

test('run creates, runs, destroys, and exits with the command code', () =>
  withFake(async (fake) => {
    const ok = await sandstorm(fake, ['run', '--memory', '128', '--', 'echo', '42'])
    assert.equal(ok.code, 0, ok.stderr)
    assert.equal(ok.stdout, '42\n')
    const failed = await sandstorm(fake, ['run', '--', 'fail'])
    assert.equal(failed.code, 3)
    assert.equal(fake.sandboxes.size, 0)
    assert.equal(fake.requests.filter((r) => r.startsWith('DELETE')).length, 2)
  }))

test('cp copies into and out of a sandbox', () =>
  withFake(async (fake) => {
    const dir = mkdtempSync(join(tmpdir(), 'sandstorm-cp-'))
    try {
      const id = (await sandstorm(fake, ['create'])).stdout.trim()
      const local = join(dir, 'in.bin')
      const bytes = Buffer.alloc(3 << 20, 0xab)
      writeFileSync(local, bytes)
      const up = await sandstorm(fake, ['cp', local, `${id}:/tmp/x.bin`])
      assert.equal(up.code, 0, up.stderr)
      assert.ok(fake.files.get('/tmp/x.bin')?.equals(bytes))
      // Into a directory: the name is kept.
      assert.equal((await sandstorm(fake, ['cp', local, `${id}:/tmp/`])).code, 0)
      assert.ok(fake.files.has('/tmp/in.bin'))

      const down = await sandstorm(fake, ['cp', `${id}:/tmp/x.bin`, join(dir, 'out.bin')])
      assert.equal(down.code, 0, down.stderr)
      assert.ok(readFileSync(join(dir, 'out.bin')).equals(bytes))
      const toStdout = await sandstorm(fake, ['cp', `${id}:/tmp/x.bin`, '-'])
      assert.equal(toStdout.stdout.length, bytes.length)
      const fromStdin = await sandstorm(fake, ['cp', '-', `${id}:/tmp/stdin.txt`], 'from stdin')
      assert.equal(fake.files.get('/tmp/stdin.txt')?.toString(), 'from stdin')
      assert.equal(fromStdin.code, 0)

      const missing = await sandstorm(fake, ['cp', `${id}:/nope`, join(dir, 'n')])
      assert.equal(missing.code, 3)
      const both = await sandstorm(fake, ['cp', 'a', 'b'])
      assert.equal(both.code, 2)
      assert.match(both.stderr, /^sandstorm: expected one side to be ID:\/abs\/path/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }))

test('template ls prints a table or JSON', () =>
  withFake(async (fake) => {
    const r = await sandstorm(fake, ['template', 'ls'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^NAME\s+VERSION\s+SIZE\s+SHARED\s+SOURCE\s+DIGEST\s+BUILD TIME\s+BUILT AT\ndebian\s+1\s+143\.1MiB\s+-\s+-\s+-\s+42s\s+2024-01-01/)
    assert.equal((JSON.parse((await sandstorm(fake, ['template', 'ls', '--json'])).stdout) as unknown[]).length, 1)
  }))

test('exit codes: bad usage 2, auth 4, unreachable 5; errors are one line', () =>
  withFake(async (fake) => {
    const badMemory = await sandstorm(fake, ['create', '--memory', 'lots'])
    assert.equal(badMemory.code, 2)
    assert.equal(badMemory.stderr, 'sandstorm: --memory: expected a positive whole number, got "lots"\n')
    const serverSaid = await sandstorm(fake, ['create', '--memory', '1'])
    assert.equal(serverSaid.code, 2)
    assert.match(serverSaid.stderr, /^sandstorm: memoryMiB: expected at least 16, got 1\n$/)
    assert.equal((await sandstorm(fake, ['frobnicate'])).code, 2)
    const auth = await sandstorm(fake, ['ls', '--api-key', 'wrong'])
    assert.equal(auth.code, 4)
    const noKey = await sandstorm(fake, ['ls'], undefined, { SANDSTORM_API_KEY: '' })
    assert.equal(noKey.code, 4)
    assert.match(noKey.stderr, /no API key/)
    const down = await sandstorm(fake, ['ls', '--url', 'http://127.0.0.1:9'])
    assert.equal(down.code, 5)
    assert.match(down.stderr, /^sandstorm: cannot reach the Sandstorm server at http:\/\/127\.0\.0\.1:9/)
    assert.equal((await sandstorm(fake, ['exec', 'sb-0000000000009999', '--', 'echo'])).code, 3)
  }))
