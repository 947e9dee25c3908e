import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import { gzipSync } from 'node:zlib'
import { Hono } from 'hono'
import type { AgentApi } from '../../agent/index.js'
import { tarBytes } from '../../images/layers/tar.fixture.js'
import type { ServerEnv } from '../context.js'
import { createBuildRuns } from '../build-runs.js'
import { captureLogs } from '../test-server.fixture.js'
import { templateBuildRoutes, type TemplateBuildRoutesDeps } from './template-build-routes.js'

const hash = 'b'.repeat(64)
let work: string
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sandstorm-e2b-build-room-'))
})
after(() => rm(work, { recursive: true, force: true }))

/** The E2B build routes on an app whose requests carry `signal`, with a 1 MiB upload limit. */
function buildRoutes(signal: AbortSignal, deps: Pick<TemplateBuildRoutesDeps, 'imageBuilds' | 'dataDir' | 'logger' | 'roomOf'>): Hono<ServerEnv> {
  const app = new Hono<ServerEnv>()
  app.use('*', async (c, next) => {
    c.set('signal', signal)
    await next()
  })
  templateBuildRoutes(app, { agent: {} as AgentApi, maxFileBytes: 1024 * 1024, shutdownSignal: signal, ...deps })
  return app
}

describe('e2b template builds on a disk with little room', () => {
  it("refuse an upload past the room, and a COPY's files that unpack past it, keeping nothing and building nothing", async () => {
    const shutdown = new AbortController()
    const dataDir = join(work, 'data')
    const logs = captureLogs()
    let roomBytes = 64 * 1024
    let builds = 0
    const app = buildRoutes(shutdown.signal, {
      imageBuilds: { build: async () => void builds++, track: (_name, signal, work) => work(signal) },
      dataDir,
      logger: logs.logger,
      roomOf: async () => roomBytes,
    })
    try {
      const requested = await app.request('/v3/templates', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'app' }) })
      assert.equal(requested.status, 202)
      const { buildID } = (await requested.json()) as { buildID: string }
      const uploads = join(dataDir, 'e2b-template-builds', buildID, 'uploads')
      const put = (body: Buffer) => app.request(`/templates/app/uploads/${hash}/files`, { method: 'PUT', body: new Uint8Array(body) })

      // 256 KiB into 64 KiB of room: 429, with what it needed and what was free; no part kept.
      const refused = await put(Buffer.alloc(256 * 1024, 1))
      assert.equal(refused.status, 429)
      assert.match(((await refused.json()) as { message: string }).message, new RegExp(`^receiving the files of ${hash} failed: the host's disk is full: it needs at least \\d+ bytes and ${roomBytes} bytes are free`))
      assert.deepEqual(await readdir(uploads), [])

      // A small gzip that unpacks to 256 KiB is taken, then its unpack stops at the room.
      const files = gzipSync(await tarBytes([{ name: 'big', content: Buffer.alloc(256 * 1024) }]))
      assert.equal((await put(files)).status, 200)
      const started = await app.request(`/v2/templates/app/builds/${buildID}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ fromImage: 'debian', steps: [{ type: 'COPY', args: ['big', '/big', '', ''], filesHash: hash }] }),
      })
      assert.equal(started.status, 202)
      await logs.waitFor((r) => r.msg === 'template build failed before building' || r.msg === 'template build ended')
      const status = (await (await app.request(`/templates/app/builds/${buildID}/status`)).json()) as { status: string; reason?: { message: string } }
      assert.equal(status.status, 'error')
      assert.match(status.reason?.message ?? '', new RegExp(`^unpacking the files of ${hash} failed: the host's disk is full: it needs at least ${256 * 1024} bytes and ${roomBytes} bytes are free`))
      assert.equal(builds, 0, 'nothing is built')
      assert.deepEqual(await readdir(join(dataDir, 'e2b-template-builds')), [], "the build's files are gone")
    } finally {
      shutdown.abort()
    }
  })
})

describe('e2b template builds and a delete of their template', () => {
  it('a build still unpacking its files is stopped by a stop of its template\'s builds, and builds nothing', async () => {
    const shutdown = new AbortController()
    const dataDir = join(work, 'data-stop')
    const logs = captureLogs()
    let builds = 0
    const runs = createBuildRuns({ timeoutMs: 60_000 })
    // The unpack waits here, on its room, until the test lets it go.
    let unpacking!: () => void
    const reached = new Promise<void>((resolve) => (unpacking = resolve))
    let letGo!: () => void
    const held = new Promise<void>((resolve) => (letGo = resolve))
    const app = buildRoutes(shutdown.signal, {
      imageBuilds: { build: (name, _source, _emit, signal) => runs.run(name, signal, async () => void builds++), track: runs.run },
      dataDir,
      logger: logs.logger,
      roomOf: async (dir) => {
        if (dir.includes('/context/')) {
          unpacking()
          await held
        }
        return 1024 ** 3
      },
    })
    try {
      const { buildID } = (await (await app.request('/v3/templates', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'app' }) })).json()) as { buildID: string }
      const files = gzipSync(await tarBytes([{ name: 'f', content: 'x' }]))
      assert.equal((await app.request(`/templates/app/uploads/${hash}/files`, { method: 'PUT', body: new Uint8Array(files) })).status, 200)
      const started = await app.request(`/v2/templates/app/builds/${buildID}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ fromImage: 'debian', steps: [{ type: 'COPY', args: ['f', '/f', '', ''], filesHash: hash }] }),
      })
      assert.equal(started.status, 202)
      await reached
      // What a delete of the template does first.
      const stopping = runs.stop('app', new SandstormError('canceled', 'template "app" was deleted while it was being built'))
      letGo()
      assert.equal(await stopping, 1, 'the unpacking build is among the builds of its template')
      await logs.waitFor((r) => r.msg === 'template build failed before building' || r.msg === 'template build ended')
      const status = (await (await app.request(`/templates/app/builds/${buildID}/status`)).json()) as { status: string }
      assert.equal(status.status, 'error')
      assert.equal(builds, 0, 'nothing is built')
    } finally {
      shutdown.abort()
    }
  })
})
