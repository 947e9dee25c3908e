/**
 * The package's promises, checked on what it ships: the main entry bundles for a browser with no
 * Node builtin and runs with web APIs alone; `npm pack` holds only its own build, package.json and
 * README; nothing it depends on is native.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { builtinModules } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { build, type Plugin } from 'esbuild'
import { startFakeApi } from './fake-api.fixture.js'

/** dist/portable.test.js -> the package's root */
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..')
const mainEntry = join(packageRoot, 'dist', 'index.js')

/** Records every Node builtin the bundle asks for (and keeps it out, so the build goes on to list them all). */
function nodeBuiltins(found: string[]): Plugin {
  const names = new Set(builtinModules)
  return {
    name: 'node-builtins',
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        const bare = args.path.replace(/^node:/, '').split('/')[0]!
        if (!args.path.startsWith('node:') && !names.has(bare)) return undefined
        found.push(`${args.path} (imported by ${args.importer})`)
        return { path: args.path, external: true }
      })
    },
  }
}

async function bundleMain(outfile?: string): Promise<string[]> {
  const found: string[] = []
  await build({ entryPoints: [mainEntry], bundle: true, platform: 'browser', format: 'esm', write: outfile !== undefined, outfile, logLevel: 'silent', plugins: [nodeBuiltins(found)] })
  return found
}

test('the main entry bundles for a browser without any Node builtin', async () => {
  assert.deepEqual(await bundleMain(), [])
})

test('the main entry brings no zod: the server validates, and the wire values it needs are plain', async () => {
  const { metafile } = await build({ entryPoints: [mainEntry], bundle: true, platform: 'browser', format: 'esm', write: false, outfile: 'sdk.js', minify: true, metafile: true, logLevel: 'silent' })
  const inputs = Object.values(metafile.outputs)[0]!.inputs
  const zod = Object.keys(inputs).filter((path) => /[\\/]zod[\\/]/.test(path) && inputs[path]!.bytesInOutput > 0)
  assert.deepEqual(zod, [])
})

test('the check above catches a Node builtin (the /node entry has some)', async () => {
  const found: string[] = []
  await build({ entryPoints: [join(packageRoot, 'dist', 'node', 'index.js')], bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent', plugins: [nodeBuiltins(found)] })
  assert.ok(found.some((f) => f.startsWith('node:net')), `expected node:net among ${JSON.stringify(found)}`)
})

test('the browser bundle runs with web APIs alone: no process, Buffer or require', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sdk-portable-'))
  const fake = await startFakeApi()
  try {
    // Node's own fetch needs the real globals, so they are hidden from the bundle only: bare names
    // by module-level constants, `globalThis.x` by esbuild's define. A use of them by the SDK
    // then throws, as it would in a browser.
    const bundle = join(dir, 'sdk.mjs')
    const found: string[] = []
    await build({
      entryPoints: [mainEntry],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      outfile: bundle,
      logLevel: 'silent',
      plugins: [nodeBuiltins(found)],
      banner: { js: 'const process = undefined, Buffer = undefined, require = undefined, global = undefined;' },
      define: { 'globalThis.process': 'undefined', 'globalThis.Buffer': 'undefined', 'globalThis.require': 'undefined' },
    })
    assert.deepEqual(found, [])
    const { Sandbox } = (await import(pathToFileURL(bundle).href)) as typeof import('./index.js')
    const conn = { apiUrl: fake.url, apiKey: fake.apiKey }
    const sbx = await Sandbox.create('debian', conn)
    let streamed = ''
    const split = await sbx.commands.run('utf8split', { onStdout: (d) => (streamed += d) })
    assert.equal(streamed, 'é€\n')
    assert.equal(split.stdout, 'é€\n')
    assert.equal((await sbx.commands.run('cat', { stdin: 'héllo €' })).stdout, 'héllo €')
    await sbx.files.write('/tmp/a.txt', '\ufeffé€ text')
    assert.equal(await sbx.files.read('/tmp/a.txt'), '\ufeffé€ text')
    assert.deepEqual(await sbx.files.read('/tmp/a.txt', { format: 'bytes' }), new TextEncoder().encode('\ufeffé€ text'))
    assert.deepEqual((await Sandbox.list(conn)).map((s) => s.id), [sbx.sandboxId])
    assert.equal(await sbx.kill(), true)
    // Without an environment, no key is found: the error says how to give one.
    await assert.rejects(Sandbox.list({ apiUrl: fake.url }), /no API key: pass \{ apiKey \}/)
  } finally {
    await fake.close()
    await rm(dir, { recursive: true, force: true })
  }
})

test('npm pack holds only the build, package.json and README', async () => {
  const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: packageRoot })
  const [pack] = JSON.parse(stdout) as [{ name: string; files: { path: string }[] }]
  assert.equal(pack.name, '@sandstorm/sdk')
  const paths = pack.files.map((f) => f.path)
  const strays = paths.filter((p) => !(p === 'package.json' || p === 'README.md' || (p.startsWith('dist/') && !/\.test\.|tsbuildinfo/.test(p))))
  assert.deepEqual(strays, [])
  for (const entry of ['dist/index.js', 'dist/index.d.ts', 'dist/wire/index.js', 'dist/node/index.js', 'dist/testing.js']) assert.ok(paths.includes(entry), `expected ${entry} in the pack`)
})

test('no dependency, direct or not, builds native code or runs an install script', async () => {
  const seen = new Set<string>()
  const native: string[] = []
  const visit = async (from: string, name: string): Promise<void> => {
    const dir = await locate(from, name)
    if (seen.has(dir)) return
    seen.add(dir)
    const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { gypfile?: boolean; scripts?: Record<string, string>; dependencies?: Record<string, string> }
    const scripts = pkg.scripts ?? {}
    if (pkg.gypfile || scripts.install || scripts.preinstall || scripts.postinstall) native.push(name)
    for (const dep of Object.keys(pkg.dependencies ?? {})) await visit(dir, dep)
  }
  const own = JSON.parse(await readFile(join(packageRoot, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
  for (const dep of Object.keys(own.dependencies)) await visit(packageRoot, dep)
  assert.ok(seen.size >= Object.keys(own.dependencies).length)
  assert.deepEqual(native, [])
})

/** The directory of package `name` as Node would find it from `from` (up the node_modules chain). */
async function locate(from: string, name: string): Promise<string> {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name)
    try {
      await readFile(join(candidate, 'package.json'))
      return candidate
    } catch {
      if (dirname(dir) === dir) throw new Error(`${name} is not installed above ${from}`)
    }
  }
}
