#!/usr/bin/env node
// Builds the web console: type-checks src/ui (its own tsconfig: DOM, preact's JSX), then bundles it
// with esbuild for the browser into dist/ui (index.html, app.js, app.css with xterm's styles).
// No source maps, no CDN, no inline script: the server sends a strict Content-Security-Policy.
import { execFileSync } from 'node:child_process'
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const src = join(root, 'src/ui')
const out = join(root, 'dist/ui')

try {
  execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(src, 'tsconfig.json')], { stdio: 'inherit' })
} catch {
  console.error('build-ui: src/ui does not type-check (errors above)')
  process.exit(1)
}

await rm(out, { recursive: true, force: true })
await mkdir(out, { recursive: true })
await build({
  entryPoints: { app: join(src, 'main.tsx') },
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  minify: true,
  legalComments: 'eof',
  outdir: out,
  logLevel: 'warning',
})
await copyFile(join(src, 'index.html'), join(out, 'index.html'))
const names = await readdir(out)
for (const want of ['index.html', 'app.js', 'app.css']) {
  if (!names.includes(want)) throw new Error(`the console build did not write dist/ui/${want}`)
}
