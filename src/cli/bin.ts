#!/usr/bin/env node
/**
 * The `sandstorm` bin: starts the CLI as fast as Node allows. `npm run build` bundles the client
 * path into program.bundle.cjs beside this file (scripts/build-cli.mjs); it is compiled here with
 * V8's code cache (program.bundle.cache, written by the first start that lacks a usable one), so a
 * start reads two files instead of resolving and compiling some 200 modules. Without the bundle
 * (only `tsc` ran, or it ran after the last build), this is main.js: the unbundled program.
 */
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import module, { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Script } from 'node:vm'

// Node >= 22.1 caches compiled modules itself; Node 20 lacks it (the bundle's own cache covers that).
;(module as { enableCompileCache?: () => unknown }).enableCompileCache?.()

const here = dirname(fileURLToPath(import.meta.url))
const bundlePath = join(here, 'program.bundle.cjs')
const cachePath = join(here, 'program.bundle.cache')

type Main = (argv?: string[]) => Promise<never>

/** Compiles and runs the bundle as CommonJS would, with the code cache when V8 accepts it. */
function loadBundle(source: string): Main {
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
  wrapper.call(mod.exports, mod.exports, createRequire(bundlePath), mod, bundlePath, here, load)
  return mod.exports.main
}

/** The bundle's text, unless it is missing or older than tsc's output (tsc ran after the last build). */
function freshBundle(): string | undefined {
  try {
    if (statSync(bundlePath).mtimeMs < statSync(join(here, 'program.js')).mtimeMs) return undefined
    return readFileSync(bundlePath, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

const source = freshBundle()
const main: Main = source === undefined ? (await import('./program.js')).main : loadBundle(source)
await main()
