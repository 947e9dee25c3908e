import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { Hono } from 'hono'
import type { ServerEnv } from './context.js'
import { uiContentSecurityPolicy, uiRoutes } from './routes-ui.js'

let root: string
let dir: string
const index = '<!doctype html><title>console</title><script type="module" src="/ui/app.js"></script>'

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'sandstorm-ui-routes-'))
  dir = join(root, 'ui')
  await mkdir(join(dir, 'nested'), { recursive: true })
  await writeFile(join(dir, 'index.html'), index)
  await writeFile(join(dir, 'app.js'), 'console.log(1)')
  await writeFile(join(dir, 'app.css'), 'body{}')
  await writeFile(join(dir, 'notes.txt'), 'not a type the console ships')
  await writeFile(join(dir, '.env'), 'SECRET=1')
  await writeFile(join(dir, 'nested', 'inner.js'), 'inner-file-content')
  await writeFile(join(root, 'secret.js'), 'outside')
  await symlink(join(root, 'secret.js'), join(dir, 'linked.js'))
})
after(async () => {
  await rm(root, { recursive: true, force: true })
})

/** A bare app with the console's routes and a catch-all that says the API answered. */
function appOf(uiDir: string): Hono<ServerEnv> {
  const app = new Hono<ServerEnv>()
  uiRoutes(app, { dir: uiDir })
  app.all('*', (c) => c.text('the API', 418))
  return app
}

test('/ui, /ui/ and page paths answer index.html with the CSP, nosniff and cache headers', async () => {
  const app = appOf(dir)
  for (const path of ['/ui', '/ui/', '/ui/sandboxes', '/ui/sandboxes/sb-1/files', '/ui/snapshots/snap-1/']) {
    const res = await app.request(path)
    assert.equal(res.status, 200, path)
    assert.equal(await res.text(), index, path)
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8')
    assert.equal(res.headers.get('content-security-policy'), uiContentSecurityPolicy)
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
    assert.equal(res.headers.get('cache-control'), 'no-cache')
  }
  assert.match(uiContentSecurityPolicy, /default-src 'self'/)
  assert.doesNotMatch(uiContentSecurityPolicy, /script-src[^;]*unsafe/)
})

test('assets answer with their content type, an ETag and 304 when unchanged', async () => {
  const app = appOf(dir)
  const js = await app.request('/ui/app.js')
  assert.equal(js.status, 200)
  assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8')
  assert.equal(await js.text(), 'console.log(1)')
  const again = await app.request('/ui/app.js', { headers: { 'if-none-match': js.headers.get('etag')! } })
  assert.equal(again.status, 304)
  assert.equal((await app.request('/ui/app.css')).headers.get('content-type'), 'text/css; charset=utf-8')
})

test('nothing but the plain files of the directory is served: no other type, dot file, subfolder, link or climb', async () => {
  const app = appOf(dir)
  for (const path of ['/ui/notes.txt', '/ui/.env', '/ui/nested/inner.js', '/ui/sandboxes/app.js', '/ui/linked.js', '/ui/missing.js', '/ui/..%2fsecret.js', '/ui/%2e%2e%2fsecret.js', '/ui/.%2e/secret.js', '/ui/a%00b', '/ui/..']) {
    const res = await app.request(path)
    const body = await res.text()
    if (res.status === 418) continue // The URL parser resolved the dots: the path left /ui, and the API answers it.
    assert.equal(res.status, 404, `${path}: ${body}`)
    assert.doesNotMatch(body, /outside|SECRET=1|inner-file-content|not a type the console/, path)
    assert.equal(JSON.parse(body).code, 'not_found')
  }
  // A path resolved out of /ui never reaches these routes.
  assert.equal((await app.request('/ui/../secret.js')).status, 418)
})

test('an unbuilt console answers 404 saying how to build it, then serves the build once it is there', async () => {
  const later = join(root, 'later')
  const app = appOf(later)
  const res = await app.request('/ui')
  assert.equal(res.status, 404)
  assert.match((await res.json() as { message: string }).message, /not built: run "npm run build"/)
  await mkdir(later)
  await writeFile(join(later, 'index.html'), index)
  assert.equal((await app.request('/ui')).status, 200)
})
