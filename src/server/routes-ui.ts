/**
 * The web console's static files under /ui: the bundle that `npm run build` writes to dist/ui.
 * They hold no data, so they need no API key; every call the console makes to the API does.
 */
import { createHash } from 'node:crypto'
import { lstat, readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Context, Hono } from 'hono'
import type { ServerEnv } from './context.js'

/** Where the build puts the console: dist/ui, beside dist/src where this file runs from. */
export const defaultUiDir = fileURLToPath(new URL('../../ui/', import.meta.url))

/** One file of the console, read once. */
interface UiFile {
  body: Uint8Array<ArrayBuffer>
  type: string
  etag: string
}

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
}

/**
 * No inline script may run: the bundle is the only script. xterm.js sets element styles, hence
 * 'unsafe-inline' for styles only. The terminal is a WebSocket to this same server.
 */
export const uiContentSecurityPolicy =
  "default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self' 'unsafe-inline'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/** A file name the console ships: one flat directory, no dot files, nothing that climbs. */
const assetName = /^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9]+)+$/
/** A segment of a page of the single-page app (a route such as /ui/sandboxes/sb-1): answered with index.html. */
const pageSegment = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/

/** Reads every file of the console directory (flat, small) into memory, or returns why it cannot. */
async function loadUi(dir: string): Promise<Map<string, UiFile> | string> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch {
    return 'the web console is not built: run "npm run build"'
  }
  const files = new Map<string, UiFile>()
  for (const name of names) {
    const ext = name.slice(name.lastIndexOf('.'))
    const type = contentTypes[ext]
    // Plain files only: a link in the directory could point anywhere on the host.
    if (!type || !assetName.test(name) || !(await lstat(join(dir, name))).isFile()) continue
    const body = new Uint8Array(await readFile(join(dir, name)))
    files.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` })
  }
  if (!files.has('index.html')) return 'the web console is not built (no index.html): run "npm run build"'
  return files
}

/** Options of uiRoutes. */
export interface UiRoutesOptions {
  /** @default dist/ui */
  dir?: string
}

/**
 * GET /ui and /ui/*: the console's files, and index.html for any other page path (the app routes
 * in the browser). Register before the API key check: these answers hold no data.
 */
export function uiRoutes(app: Hono<ServerEnv>, options: UiRoutesOptions = {}): void {
  const dir = options.dir ?? defaultUiDir
  // Read on first use, so a server started before a build still serves it; kept once read.
  let loading: Promise<Map<string, UiFile> | string> | undefined
  const load = async (): Promise<Map<string, UiFile> | string> => {
    const loaded = await (loading ??= loadUi(dir))
    if (typeof loaded === 'string') loading = undefined
    return loaded
  }

  const serve = async (c: Context<ServerEnv>): Promise<Response> => {
    const files = await load()
    const headers: Record<string, string> = {
      'content-security-policy': uiContentSecurityPolicy,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cross-origin-opener-policy': 'same-origin',
    }
    const notFound = (message: string): Response =>
      new Response(JSON.stringify({ code: 'not_found', message }), { status: 404, headers: { ...headers, 'content-type': 'application/json', 'cache-control': 'no-store' } })
    if (typeof files === 'string') return notFound(files)

    // Hono's path is decoded once; a segment that still holds %, a slash or "..", is refused.
    const rest = c.req.path.replace(/^\/ui\/?/, '').replace(/\/$/, '')
    const segments = rest === '' ? [] : rest.split('/')
    let file: UiFile | undefined
    // A name with an extension is a file, only ever one of the directory's own (never index.html
    // in its place: a script or style asked for must not get a page).
    if (segments.length > 0 && assetName.test(segments.at(-1)!)) {
      file = segments.length === 1 ? files.get(segments[0]!) : undefined
      if (!file) return notFound(`no file ${c.req.path} in the web console: expected one of ${[...files.keys()].map((n) => `/ui/${n}`).join(', ')}`)
    } else if (segments.every((s) => pageSegment.test(s) && !/^\.+$/.test(s))) {
      file = files.get('index.html')!
    } else {
      return notFound(`no page ${c.req.path} in the web console: expected /ui/ followed by letters, digits, "-", "_" and "." (no "..")`)
    }

    headers['content-type'] = file.type
    headers.etag = file.etag
    // Not content-hashed names: let the browser keep them, but ask each time whether they changed.
    headers['cache-control'] = 'no-cache'
    if (c.req.header('if-none-match') === file.etag) return new Response(null, { status: 304, headers })
    return new Response(c.req.method === 'HEAD' ? null : file.body, { status: 200, headers })
  }

  app.get('/ui', serve)
  app.get('/ui/*', serve)
}
