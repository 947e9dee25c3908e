#!/usr/bin/env node
/**
 * Bundles the CLI's client path into one file, dist/src/cli/program.bundle.cjs, that
 * dist/src/cli/bin.js (the `sandstorm` bin) loads with V8's code cache. Run after `tsc`: the input
 * is tsc's output, so imports resolve as Node resolves them (the SDK from wherever they point).
 *
 * Every dynamic `import()` stays outside the bundle, as written: the bundle sits beside
 * dist/src/cli/program.js, so `import('../server/index.js')` still finds tsc's output, and the
 * server, agent, runtimes, SQLite, gRPC and pino (native modules, worker threads, files found from
 * import.meta.url) run unbundled, loaded only by the commands that use them.
 */
import { rm } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const cliDir = join(root, 'dist/src/cli')
const outfile = join(cliDir, 'program.bundle.cjs')

/** Modules of the tree that only re-export or declare: esbuild may drop those nothing uses (pino's logger, zod-free paths). */
const sideEffectFree = /[\\/]dist[\\/]src[\\/](shared|sdk)[\\/][^\\/]+\.js$/

const result = await esbuild.build({
  entryPoints: [join(cliDir, 'program.js')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // import() is kept as import() (esbuild would turn it into require() in a CommonJS file).
  supported: { 'dynamic-import': true },
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
          if (args.kind === 'dynamic-import') return { path: args.path, external: true }
          if (!args.path.startsWith('.')) return undefined
          const path = resolve(args.resolveDir, args.path)
          return sideEffectFree.test(path) ? { path, sideEffects: false } : undefined
        })
      },
    },
  ],
})

// A code cache made for an older bundle would be rejected by V8; remove it so that the next start makes a fresh one.
await rm(join(cliDir, 'program.bundle.cache'), { force: true })
const bytes = Object.values(result.metafile.outputs)[0]?.bytes ?? 0
process.stdout.write(`cli bundle: ${outfile.slice(root.length + 1)} (${Math.round(bytes / 1024)} KiB)\n`)
