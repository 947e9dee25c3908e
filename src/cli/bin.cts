#!/usr/bin/env node
/**
 * The `sandstorm` bin: starts the CLI as fast as Node allows. `npm run build` bundles the client
 * path into program.bundle.cjs beside this file (scripts/build-cli.mjs); it is compiled here with
 * V8's code cache (program.bundle.cache, written by the first start that lacks a usable one), so a
 * start reads two files instead of resolving and compiling some 200 modules. Without the bundle
 * (only `tsc` ran, or it ran after the last build), this runs program.js: the unbundled program.
 *
 * It is CommonJS on purpose: an ES module entry starts Node's ESM loader and wraps every builtin it
 * imports in a namespace (node:fs's pulls in all of node:stream), some 10 ms of a start that the
 * bundle itself never needs.
 */
import fs = require('node:fs')
import path = require('node:path')

const { readFileSync, renameSync, statSync, writeFileSync } = fs
const { join } = path
const bundlePath = join(__dirname, 'program.bundle.cjs')
const cachePath = join(__dirname, 'program.bundle.cache')

type Main = (argv?: string[]) => Promise<never>

/** Compiles and runs the bundle as CommonJS would, with the code cache when V8 accepts it. */
function loadBundle(source: string): Main {
  // Required here, not above: the unbundled start has no use for it.
  const { Script } = require('node:vm') as typeof import('node:vm')
  let cachedData: Buffer | undefined
  try {
    cachedData = readFileSync(cachePath)
  } catch {
    // No cache yet: this start writes one.
  }
  const script = new Script(`(function (exports, require, module, __filename, __dirname, __import) {${source}\n})`, { filename: bundlePath, cachedData })
  if (cachedData === undefined || script.cachedDataRejected) {
    // Made at exit, so that it holds the functions this command compiled as well.
    process.once('exit', () => {
      try {
        const tmp = `${cachePath}.${process.pid}`
        writeFileSync(tmp, script.createCachedData())
        renameSync(tmp, cachePath)
      } catch {
        // A read-only install runs without a cache, only slower.
      }
    })
  }
  const mod = { exports: {} as { main: Main } }
  const wrapper = script.runInThisContext() as (...args: unknown[]) => void
  // The bundle's import()s (server, agent, runtimes) are made here, beside it (scripts/build-cli.mjs).
  const load = (specifier: string): Promise<unknown> => import(specifier)
  // The bundle's own require() is this file's: both sit in one directory.
  wrapper.call(mod.exports, mod.exports, require, mod, bundlePath, __dirname, load)
  return mod.exports.main
}

/** The bundle's text, unless it is missing or older than tsc's output (tsc ran after the last build). */
function freshBundle(): string | undefined {
  try {
    if (statSync(bundlePath).mtimeMs < statSync(join(__dirname, 'program.js')).mtimeMs) return undefined
    return readFileSync(bundlePath, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** The program's main, from the bundle when it is fresh, else from tsc's output. */
async function programMain(): Promise<Main> {
  const source = freshBundle()
  if (source !== undefined) return loadBundle(source)
  // Node >= 22.1 caches compiled modules on disk, for the some 200 of the unbundled program; Node 20 lacks it.
  ;(require('node:module') as { enableCompileCache?: () => unknown }).enableCompileCache?.()
  return ((await import('./program.js')) as { main: Main }).main
}

void programMain().then((main) => main())
