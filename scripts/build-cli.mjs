#!/usr/bin/env node
/**
 * Bundles the CLI's client path into one file, dist/src/cli/program.bundle.cjs, that
 * dist/src/cli/bin.cjs (the `sandstorm` bin) loads with V8's code cache. Run after `tsc`: the input
 * is tsc's output, so imports resolve as Node resolves them (the SDK from wherever they point).
 *
 * Every `import()` of something other than a CLI module stays outside the bundle, as written: the
 * bundle sits beside dist/src/cli/program.js, so `import('../server/index.js')` still finds tsc's
 * output, and the server, agent, runtimes, SQLite, gRPC and pino (native modules, worker threads,
 * files found from import.meta.url) run unbundled, loaded only by the commands that use them.
 *
 * program.js loads each command's module with import(), so a start evaluates commander, the SDK
 * and the one command it runs (bundled, such a module becomes a function run on first import()).
 * The build fails if anything else would be evaluated at every start (see `eagerAllowed`).
 */
import { readFile, rm, writeFile } from 'node:fs/promises'
import { builtinModules } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const cliDir = join(root, 'dist/src/cli')
const outfile = join(cliDir, 'program.bundle.cjs')

const cliModule = /[\\/]dist[\\/]src[\\/]cli[\\/][^\\/]+\.js$/
/** What the bundle may hold of the tree: the CLI, the SDK and the shared wire types and checks. */
const clientModule = /^dist[\\/]src[\\/](cli|sdk|shared)[\\/]/

/** Modules of the tree that only re-export or declare: esbuild may drop those nothing uses (pino's logger). */
const sideEffectFree = /[\\/]dist[\\/]src[\\/](shared|sdk)[\\/][^\\/]+\.js$/

/**
 * What every start may evaluate, before the command's own module is imported: commander, the
 * program with its exit codes and the escaping of the error line it prints, the SDK's portable
 * entry and the shared error class. Anything else there (ws, tar-stream, ipaddr.js, another
 * command) would cost every command its evaluation.
 */
const eagerAllowed = /^(node_modules[\\/]commander[\\/]|dist[\\/]src[\\/]cli[\\/](program|exit-codes|terminal-text)\.js$|dist[\\/]src[\\/]shared[\\/]errors\.js$|packages[\\/]sdk[\\/]dist[\\/](?!node[\\/])|lazy-builtin:)/
/** Modules every start may require from outside the bundle: builtins Node has loaded before any user code runs. */
const eagerBuiltins = new Set(['events', 'fs', 'path', 'process'])
/** Builtins required lazily, on first use of the module object, by the dependencies that name them at load. */
const lazyBuiltins = new Map([[/[\\/]node_modules[\\/]commander[\\/]/, ['node:child_process']]])

/**
 * Index modules whose every re-export a module loaded with import() evaluates (such a module keeps
 * all that it imports): the bundle sees them without the files that import zod or pino, the
 * server's schemas and logger. A client module importing a name from those fails the build
 * ("No matching export"), naming it.
 */
const barrels = /[\\/](dist[\\/]src[\\/]shared|packages[\\/]sdk[\\/]dist[\\/]wire)[\\/]index\.js$/
const serverOnly = /from ['"](zod|pino)(\/[^'"]*)?['"]/

/** Whether a module of the tree imports zod or pino, itself or through its relative imports. */
async function importsServerOnly(file, seen = new Set()) {
  if (seen.has(file)) return false
  seen.add(file)
  const text = await readFile(file, 'utf8')
  if (serverOnly.test(text)) return true
  for (const [, rel] of text.matchAll(/^(?:import|export)\s[^'"]*?from\s+['"](\.{1,2}\/[^'"]+)['"]/gm)) {
    if (await importsServerOnly(resolve(dirname(file), rel), seen)) return true
  }
  return false
}

/**
 * Packages that a few commands use (the terminal's WebSocket client, a build context's tar and its
 * .dockerignore, CIDR checks) stay in node_modules, required when the module that imports them runs: the bundle is
 * read at every start, and is half as long without them.
 */
const rarelyUsed = ['ws', 'tar-stream', '@balena/dockerignore', 'ipaddr.js']

/** Specifiers of the import()s left out, rewritten below. */
const leftOut = new Set()

const result = await esbuild.build({
  entryPoints: [join(cliDir, 'program.js')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // import() is kept as import() (esbuild would turn it into require() in a CommonJS file).
  supported: { 'dynamic-import': true },
  write: false,
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  metafile: true,
  external: rarelyUsed,
  logLevel: 'warning',
  plugins: [
    {
      name: 'sandstorm-cli',
      setup(build) {
        build.onResolve({ filter: /^node:/ }, (args) => {
          for (const [importer, specifiers] of lazyBuiltins) {
            if (importer.test(args.importer) && specifiers.includes(args.path)) return { path: args.path, namespace: 'lazy-builtin' }
          }
          return undefined
        })
        build.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => ({
          contents: `let m\nmodule.exports = new Proxy({}, { get: (_, key) => (m ??= require(${JSON.stringify(args.path)}))[key] })\n`,
          loader: 'js',
        }))
        build.onLoad({ filter: barrels }, async (args) => {
          const lines = (await readFile(args.path, 'utf8')).split('\n')
          const kept = []
          for (const line of lines) {
            const rel = /^export \*(?: as \w+)? from '(\.{1,2}\/[^']+)'/.exec(line)?.[1]
            if (rel === undefined || !(await importsServerOnly(resolve(dirname(args.path), rel)))) kept.push(line)
          }
          return { contents: kept.join('\n'), loader: 'js', resolveDir: dirname(args.path) }
        })
        build.onResolve({ filter: /.*/ }, (args) => {
          // import() of a CLI module is bundled (and run only when called); of anything else, left out.
          if (args.kind === 'dynamic-import' && !(args.path.startsWith('.') && cliModule.test(resolve(args.resolveDir, args.path)))) {
            leftOut.add(args.path)
            return { path: args.path, external: true }
          }
          if (!args.path.startsWith('.')) return undefined
          const path = resolve(args.resolveDir, args.path)
          return sideEffectFree.test(path) ? { path, sideEffects: false } : undefined
        })
      },
    },
  ],
})

// Host code statically imported by a client module would land in the bundle, away from the files
// it finds beside itself; it must be loaded with import() instead.
const hostInputs = Object.keys(result.metafile.inputs).filter((p) => p.startsWith('dist') && !clientModule.test(p))
if (hostInputs.length > 0) {
  process.stderr.write(`build-cli: the bundle would hold host code, import() it instead: ${hostInputs.join(', ')}\n`)
  process.exit(1)
}

// The wire schemas (zod, some 600 KiB: a third of a start) are the server's: the client path takes
// plain values from their zod-free files (wire/*-limits, terminal-protocol). A module loaded with
// import() keeps all that it imports, so one import of an index there would bring zod back: refuse.
const output = Object.values(result.metafile.outputs)[0]
const zodBytes = Object.entries(output.inputs).filter(([p]) => /node_modules[\\/]zod[\\/]/.test(p)).reduce((sum, [, i]) => sum + i.bytesInOutput, 0)
if (zodBytes > 0) {
  const why = await esbuild.analyzeMetafile(result.metafile, { verbose: true })
  const lines = why.split('\n')
  const at = lines.findIndex((l) => /node_modules[\\/]zod[\\/]/.test(l))
  process.stderr.write(`build-cli: zod would be in the bundle (${zodBytes} bytes), imported through:\n${lines.slice(at, at + 10).join('\n')}\n`)
  process.exit(1)
}

// pino (the server's logger, with worker threads and file streams) has no place in a client either.
const pinoInputs = Object.keys(output.inputs).filter((p) => /node_modules[\\/]pino[\\/]/.test(p))
if (pinoInputs.length > 0) {
  process.stderr.write(`build-cli: pino would be in the bundle: ${pinoInputs.join(', ')}\n`)
  process.exit(1)
}

// What every start evaluates: the inputs reached from the entry through static imports and
// require() (an import() is a function run later). Each command's module must stay behind import().
const eager = new Set()
const eagerRequired = new Map()
const visit = (path, from) => {
  if (eager.has(path)) return
  eager.add(path)
  for (const i of result.metafile.inputs[path]?.imports ?? []) {
    if (i.kind === 'dynamic-import') continue
    if (i.external) {
      if (!eagerRequired.has(i.path)) eagerRequired.set(i.path, path)
    } else {
      visit(i.path, path)
    }
  }
}
visit(Object.keys(result.metafile.inputs).find((p) => p.endsWith('cli/program.js')))
const eagerExtra = [...eager].filter((p) => !eagerAllowed.test(p))
const eagerExtraBuiltins = [...eagerRequired].filter(([s, from]) => !eagerBuiltins.has(s.replace(/^node:/, '')) && !from.startsWith('lazy-builtin:'))
if (eagerExtra.length > 0 || eagerExtraBuiltins.length > 0) {
  const builtins = eagerExtraBuiltins.map(([s, from]) => `${s} (required by ${from})`)
  process.stderr.write(`build-cli: every start would evaluate more than commander, the program and the SDK; load it with import() from the command that uses it: ${[...eagerExtra, ...builtins].join(', ')}\n`)
  process.exit(1)
}

// bin.cjs compiles the bundle as a vm.Script, whose own import() Node 20 supports only behind an
// experimental flag (and loses for functions restored from the code cache): each import() left out
// calls the loader bin.cjs passes in, an import() of bin.cjs itself, from the same directory.
let text = result.outputFiles[0].text
// A builtin needs no loader: import() of one would start Node's ESM loader and wrap the module in a
// namespace (some 7 ms for node:http), where require() hands over the object Node already holds.
for (const specifier of [...leftOut].filter((s) => builtinModules.includes(s.replace(/^node:/, '')))) {
  text = text.replaceAll(`import(${JSON.stringify(specifier)})`, `Promise.resolve().then(() => require(${JSON.stringify(specifier)}))`)
  leftOut.delete(specifier)
}
for (const specifier of leftOut) text = text.replaceAll(`import(${JSON.stringify(specifier)})`, `__import(${JSON.stringify(specifier)})`)
await writeFile(outfile, text)

// A code cache made for an older bundle would be rejected by V8; remove it so that the next start makes a fresh one.
await rm(join(cliDir, 'program.bundle.cache'), { force: true })
await rm(join(cliDir, 'program.bundle.cache-commands'), { force: true })
process.stdout.write(`cli bundle: ${outfile.slice(root.length + 1)} (${Math.round(text.length / 1024)} KiB)\n`)
