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
/** The commands whose functions the cache holds, one a line (as program.ts's commandsFor names them). */
const coveredPath = join(__dirname, 'program.bundle.cache-commands')

type Main = (argv?: string[]) => Promise<never>
/** What the bundle (program.ts) exports that this file uses. */
interface BundleExports {
  main: Main
  commandsFor: (args: readonly string[]) => { only: string } | 'none' | 'all'
}

/** A file's text, or undefined when there is none yet. */
function readIfThere(file: string): Buffer | undefined {
  try {
    return readFileSync(file)
  } catch {
    return undefined
  }
}

/** Writes a file whole or not at all (a start running beside this one may be reading it). */
function writeWhole(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.${process.pid}`
  writeFileSync(tmp, data)
  renameSync(tmp, file)
}

/**
 * Compiles and runs the bundle as CommonJS would, with the code cache when V8 accepts it. The
 * cache is made at exit, so that it holds the functions the command compiled, and made again by
 * the first start of each command it lacks (V8 writes what is compiled then: what the cache gave
 * and what this command added), so that every command finds its own functions there.
 */
function loadBundle(source: string): Main {
  // Required here, not above: the unbundled start has no use for it.
  const { Script } = require('node:vm') as typeof import('node:vm')
  const cachedData = readIfThere(cachePath)
  const script = new Script(`(function (exports, require, module, __filename, __dirname, __import) {${source}\n})`, { filename: bundlePath, cachedData })
  const accepted = cachedData !== undefined && !script.cachedDataRejected
  const mod = { exports: {} as BundleExports }
  const wrapper = script.runInThisContext() as (...args: unknown[]) => void
  // The bundle's import()s (server, agent, runtimes) are made here, beside it (scripts/build-cli.mjs).
  const load = (specifier: string): Promise<unknown> => import(specifier)
  // The bundle's own require() is this file's: both sit in one directory.
  wrapper.call(mod.exports, mod.exports, require, mod, bundlePath, __dirname, load)

  const needed = mod.exports.commandsFor(process.argv.slice(2))
  const command = typeof needed === 'string' ? needed : needed.only
  const covered = accepted ? String(readIfThere(coveredPath) ?? '').split('\n').filter(Boolean) : []
  if (!accepted || !covered.includes(command)) {
    process.once('exit', () => {
      try {
        writeWhole(cachePath, script.createCachedData())
        writeWhole(coveredPath, [...covered, command].join('\n'))
      } catch {
        // A read-only install runs without a cache, only slower.
      }
    })
  }
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
