/**
 * The README's SDK example, run as written: the code block is taken from README.md and run as a
 * script that imports '@sandstorm/sdk' like a user's would, with the connection from the environment.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { Sandbox } from '@sandstorm/sdk'
import { skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? false
/** dist/test/sdk-example.test.js -> the repository root */
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

/** The first ```ts block under "## SDK" in the README. */
async function readmeExample(): Promise<string> {
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## SDK'))
  const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
  assert.ok(block, 'expected a ```ts block under "## SDK" in README.md')
  return block
}

describe("the README's SDK example", { skip }, () => {
  let stack: Stack
  let appDir: string

  before(async () => {
    stack = await startStack()
    // A user's project: the package installed under node_modules, their script beside it.
    appDir = await mkdtemp(join(tmpdir(), 'sandstorm-example-'))
    await mkdir(join(appDir, 'node_modules', '@sandstorm'), { recursive: true })
    await symlink(join(repoRoot, 'packages', 'sdk'), join(appDir, 'node_modules', '@sandstorm', 'sdk'))
  })
  after(async () => {
    await stack?.close()
    if (appDir) await rm(appDir, { recursive: true, force: true })
  })

  it('runs as written, with the connection from SANDSTORM_URL and SANDSTORM_API_KEY', async () => {
    const code = await readmeExample()
    assert.match(code, /import \{ Sandbox \} from '@sandstorm\/sdk'/)
    assert.ok(code.trim().split('\n').length <= 5, `expected the example to be 5 lines, got:\n${code}`)
    // The block is TypeScript, but this one is also plain JavaScript: run it as an ES module.
    const script = join(appDir, 'example.mjs')
    await writeFile(script, code)
    const child = spawn(process.execPath, [script], {
      cwd: appDir,
      env: { ...process.env, SANDSTORM_URL: stack.conn.apiUrl, SANDSTORM_API_KEY: stack.conn.apiKey },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d))
    child.stderr.on('data', (d: Buffer) => (stderr += d))
    const [exitCode] = (await once(child, 'close')) as [number | null]
    assert.equal(exitCode, 0, stderr)
    // `ls /` streamed through onStdout.
    for (const name of ['bin', 'etc', 'tmp', 'usr']) assert.match(stdout, new RegExp(`^${name}$`, 'm'))
    // It killed its sandbox at the end.
    assert.deepEqual(await Sandbox.list(stack.conn), [])
  })

  it('does what it says, step by step, with the connection passed as options', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn, memoryMiB: 256, timeoutMs: 600_000 })
    let streamed = ''
    const r = await sbx.commands.run('ls /', { onStdout: (d) => (streamed += d) })
    assert.equal(r.exitCode, 0)
    assert.equal(streamed, r.stdout)
    assert.match(r.stdout, /^usr$/m)
    await sbx.files.write('/tmp/a.txt', 'hi')
    assert.equal(await sbx.files.read('/tmp/a.txt'), 'hi')
    assert.equal((await sbx.getInfo()).memoryMiB, 256)
    assert.equal(await sbx.kill(), true)
    assert.deepEqual(await Sandbox.list(stack.conn), [])
  })
})
