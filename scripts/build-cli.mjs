#!/usr/bin/env node
/**
 * Bundles the CLI's client path into one file, dist/src/cli/program.bundle.cjs, that
 * dist/src/cli/bin.js (the `sandstorm` bin) loads with V8's code cache. Run after `tsc`: the input
 * is tsc's output, so imports resolve as Node resolves them (the SDK from wherever they point).
 *
 * Every `import()` of something other than a CLI module stays outside the bundle, as written: the
 * bundle sits beside dist/src/cli/program.js, so `import('../server/index.js')` still finds tsc's
 * output, and the server, agent, runtimes, SQLite, gRPC and pino (native modules, worker threads,
 * files found from import.meta.url) run unbundled, loaded only by the commands that use them.
 */
import { rm, writeFile } from 'node:fs/promises'
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
  logLevel: 'warning',
  plugins: [
    {
      name: 'sandstorm-cli',
      setup(build) {
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

// bin.js compiles the bundle as a vm.Script, whose own import() Node 20 supports only behind an
// experimental flag (and loses for functions restored from the code cache): each import() left out
// calls the loader bin.js passes in, an import() of bin.js itself, from the same directory.
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
process.stdout.write(`cli bundle: ${outfile.slice(root.length + 1)} (${Math.round(text.length / 1024)} KiB)\n`)
