/**
 * The `sandstorm` bin as users start it (dist/src/cli/bin.cjs, bundled when `npm run build` made a
 * fresh bundle, else unbundled), against a small HTTP server of the test's own: what it prints,
 * its exit codes, that a client command loads none of the host's modules and, bundled, none of
 * Node's that it does not use; and that it falls back to the unbundled program when the bundle is
 * stale or missing.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'

const bin = fileURLToPath(new URL('./bin.cjs', import.meta.url))
const bundle = fileURLToPath(new URL('./program.bundle.cjs', import.meta.url))
/** dist/src/cli -> scripts/build-cli.mjs */
const buildCli = fileURLToPath(new URL('../../../scripts/build-cli.mjs', import.meta.url))

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function runBin(args: string[], env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []): Promise<Run> {
  const child = spawn(process.execPath, [...nodeArgs, bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SANDSTORM_API_KEY: 'test-key', ...env } })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => (stdout += String(c)))
  child.stderr.on('data', (c: Buffer) => (stderr += String(c)))
  return once(child, 'close').then(([code]) => ({ code: code as number | null, stdout, stderr }))
}

/** Modules a client command must never load: the host's code and its heavy dependencies. */
const hostModule = /\/dist\/src\/(server|agent|runtime|templates|storage|network|proto)\/|\/node_modules\/(better-sqlite3|@grpc|pino|execa|zod)\//

describe('the sandstorm bin', () => {
  let server: Server
  let url = ''
  let dir = ''
  const requests: string[] = []

  before(async () => {
    // The bin as `npm run build` leaves it: a tsc run after the last build leaves the bundle stale.
    const build = spawn(process.execPath, [buildCli], { stdio: ['ignore', 'ignore', 'inherit'] })
    assert.equal((await once(build, 'close'))[0], 0, 'npm run build:cli')
    // Dated ahead, so that a tsc run elsewhere while this file runs does not make it stale.
    const later = new Date(Date.now() + 3_600_000)
    await utimes(bundle, later, later)
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-bin-'))
    server = createServer((req, res) => {
      requests.push(`${req.method} ${req.url}`)
      res.setHeader('content-type', 'application/json')
      if (req.method === 'GET' && req.url === '/v1/sandboxes') return void res.end('[]')
      res.statusCode = 404
      res.end(JSON.stringify({ code: 'not_found', message: `sandbox not found: ${req.url}` }))
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  /** Runs the bin with a preload that lists, at exit, the builtins Node loaded (its own moduleLoadList). */
  async function runBinListingBuiltins(args: string[]): Promise<{ run: Run; loaded: Set<string> }> {
    const list = join(dir, 'builtins.log')
    await writeFile(join(dir, 'builtins.cjs'), `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(list)}, process.moduleLoadList.join('\\n')))\n`)
    await writeFile(list, '')
    const run = await runBin(args, {}, ['--require', join(dir, 'builtins.cjs')])
    const loaded = new Set((await readFile(list, 'utf8')).split('\n').filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length)))
    return { run, loaded }
  }

  after(async () => {
    const now = new Date()
    await utimes(bundle, now, now).catch(() => undefined)
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
    await rm(dir, { recursive: true, force: true })
  })

  it('prints its version, and help that lists every command', async () => {
    const version = await runBin(['--version'])
    assert.deepEqual([version.code, version.stdout], [0, '0.1.0\n'], version.stderr)
    const help = await runBin(['--help'])
    assert.equal(help.code, 0, help.stderr)
    for (const name of ['up', 'server', 'agent', 'agents', 'create', 'exec', 'shell', 'run', 'ls', 'metrics', 'rm', 'timeout', 'network', 'port-forward', 'cp', 'template', 'snapshot', 'pool', 'setup', 'doctor', 'keys']) {
      assert.match(help.stdout, new RegExp(`^  ${name} `, 'm'), `help lists ${name}`)
    }
  })

  it('answers bad usage with exit 2 and one line', async () => {
    const r = await runBin(['exec', '--no-such-flag', 'sbx-1', '--', 'true'])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /^sandstorm: unknown option '--no-such-flag'/)
  })

  it('lists sandboxes, and exits 3 for an unknown sandbox and 5 for no server', async () => {
    const ls = await runBin(['--url', url, 'ls', '--json'])
    assert.deepEqual([ls.code, JSON.parse(ls.stdout)], [0, []], ls.stderr)
    const missing = await runBin(['--url', url, 'exec', 'sbx-aaaaaaaaaaaaaaaa', '--', 'true'])
    assert.equal(missing.code, 3, missing.stderr)
    assert.match(missing.stderr, /^sandstorm: sandbox not found/)
    // One request: the exec's own 404 says the sandbox is missing, no lookup goes before it.
    assert.deepEqual(requests.slice(-1), ['POST /v1/sandboxes/sbx-aaaaaaaaaaaaaaaa/exec'], requests.join(', '))
    assert.ok(!requests.includes('GET /v1/sandboxes/sbx-aaaaaaaaaaaaaaaa'), requests.join(', '))
    const closed = createServer()
    closed.listen(0, '127.0.0.1')
    await once(closed, 'listening')
    const port = (closed.address() as AddressInfo).port
    await new Promise((resolve) => closed.close(resolve))
    const down = await runBin(['--url', `http://127.0.0.1:${port}`, 'ls'])
    assert.equal(down.code, 5, down.stderr)
    assert.match(down.stderr, /^sandstorm: cannot reach the Sandstorm server/)
  })

  it('runs a host command, loading its modules with import(), with and without the code cache', async () => {
    for (const round of [1, 2]) {
      const r = await runBin(['keys', 'create', '--data-dir', join(dir, 'data'), '--json'])
      assert.equal(r.code, 0, r.stderr)
      assert.match((JSON.parse(r.stdout) as { apiKey: string }).apiKey, /^ss_[0-9a-f]{64}$/, `round ${round}`)
      assert.equal(r.stderr, '', `round ${round}`)
    }
  })

  it('loads none of the host\'s modules for client commands', async () => {
    // A loader hook records every module the ESM loader resolves (the bundle's import()s included).
    const log = join(dir, 'modules.log')
    await writeFile(join(dir, 'hooks.mjs'), "import { appendFileSync } from 'node:fs'\nlet log\nexport function initialize(data) { log = data.log }\nexport async function resolve(specifier, context, next) {\n  const r = await next(specifier, context)\n  appendFileSync(log, r.url + '\\n')\n  return r\n}\n")
    await writeFile(join(dir, 'register.mjs'), `import { register } from 'node:module'\nregister(${JSON.stringify(new URL(`file://${join(dir, 'hooks.mjs')}`).href)}, { data: { log: ${JSON.stringify(log)} } })\n`)
    for (const args of [['--version'], ['--url', url, 'ls'], ['--url', url, 'exec', 'sbx-aaaaaaaaaaaaaaaa', '--', 'true'], ['run', '--help']]) {
      await writeFile(log, '')
      await runBin(args, {}, ['--import', join(dir, 'register.mjs')])
      const loaded = (await readFile(log, 'utf8')).split('\n').filter(Boolean)
      assert.ok(loaded.some((u) => u.endsWith('/cli/bin.cjs')), `the hook saw the bin start: ${loaded.join(', ')}`)
      assert.deepEqual(loaded.filter((u) => hostModule.test(u)), [], `sandstorm ${args.join(' ')}`)
    }
  })

  it('makes the code cache again for each command it lacks, keeping those it holds', async () => {
    const covered = join(dirname(bundle), 'program.bundle.cache-commands')
    const cache = join(dirname(bundle), 'program.bundle.cache')
    await rm(cache, { force: true })
    assert.equal((await runBin(['--version'])).code, 0)
    assert.deepEqual((await readFile(covered, 'utf8')).split('\n'), ['none'])
    const ls = await runBin(['--url', url, 'ls', '--json'])
    assert.deepEqual([ls.code, JSON.parse(ls.stdout)], [0, []], ls.stderr)
    assert.deepEqual((await readFile(covered, 'utf8')).split('\n'), ['none', 'ls'])
    // A command the cache holds leaves it as it is.
    const made = (await stat(cache)).mtimeMs
    assert.equal((await runBin(['--version'])).code, 0)
    assert.equal((await stat(cache)).mtimeMs, made)
    assert.deepEqual((await readFile(covered, 'utf8')).split('\n'), ['none', 'ls'])
  })

  it('loads, bundled, only the builtins a command uses: no ESM loader, no child_process, crypto or web streams', async () => {
    const unused = ['internal/modules/esm/loader', 'child_process', 'crypto', 'fs/promises', 'dgram', 'zlib', 'tls', 'readline', 'worker_threads']
    for (const [args, more] of [
      [['--version'], ['http', 'internal/webstreams/readablestream']],
      // The answers are read from node:http's own stream, without a web stream over it.
      [['--url', url, 'exec', 'sbx-aaaaaaaaaaaaaaaa', '--', 'true'], ['internal/webstreams/readablestream']],
      [['--url', url, 'exec', '--no-stdin', 'sbx-aaaaaaaaaaaaaaaa', '--', 'true'], ['internal/webstreams/readablestream']],
      [['--url', url, 'ls', '--json'], ['internal/webstreams/readablestream']],
    ] as const) {
      const { run: r, loaded } = await runBinListingBuiltins([...args])
      assert.ok(r.code === 0 || r.code === 3, r.stderr)
      assert.ok(loaded.has('vm'), `sandstorm ${args.join(' ')} ran from the bundle`)
      assert.deepEqual([...unused, ...more].filter((m) => loaded.has(m)), [], `sandstorm ${args.join(' ')}`)
    }
  })

  it('runs the unbundled program when the bundle is stale or missing', async () => {
    const time = (await stat(bundle)).mtime
    const old = new Date(Date.now() - 3_600_000)
    try {
      await utimes(bundle, old, old)
      const { run: stale, loaded } = await runBinListingBuiltins(['--url', url, 'ls', '--json'])
      assert.deepEqual([stale.code, JSON.parse(stale.stdout)], [0, []], stale.stderr)
      assert.ok(loaded.has('internal/modules/esm/loader'), 'the stale bundle was passed over for program.js')
      await rename(bundle, `${bundle}.away`)
      try {
        const missing = await runBin(['--url', url, 'exec', 'sbx-aaaaaaaaaaaaaaaa', '--', 'true'])
        assert.equal(missing.code, 3, missing.stderr)
        assert.match(missing.stderr, /^sandstorm: sandbox not found/)
        const version = await runBin(['--version'])
        assert.deepEqual([version.code, version.stdout], [0, '0.1.0\n'], version.stderr)
      } finally {
        await rename(`${bundle}.away`, bundle)
      }
    } finally {
      await utimes(bundle, time, time)
    }
  })
})
