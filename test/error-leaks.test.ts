/**
 * Errors that never leak: a failure deep in the host (runc refusing a template that binds a path
 * that is not there) reaches the client as a generic message with the request's id, through `up`
 * and through a remote agent, while the server's log has the whole cause. No host path, errno text
 * or tool output in what the client sees.
 */
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { runAgent, type RunningAgent } from '../src/agent/index.js'
import { startServer, type RunningServer } from '../src/server/index.js'
import { captureLogs } from '../src/server/test-server.fixture.js'
import { listAgents, Sandbox, SandstormSdkError } from '@sandstorm/sdk'
import { skipReason, startStack, templatesDir, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false
const probePath = '/nonexistent/sandstorm-leak-probe'

/** A templates dir with the shared debian and a `broken` template whose bind source is missing (runc fails naming it). */
async function brokenTemplates(dir: string): Promise<string> {
  const root = join(dir, 'templates')
  await mkdir(join(root, 'debian'), { recursive: true })
  await symlink(join(templatesDir, 'debian', '1'), join(root, 'debian', '1'))
  await symlink('1', join(root, 'debian', 'current'))
  const broken = join(root, 'broken', '1')
  await mkdir(broken, { recursive: true })
  await symlink(join(templatesDir, 'debian', '1', 'rootfs'), join(broken, 'rootfs'))
  await writeFile(join(broken, 'template.json'), JSON.stringify({ name: 'broken', version: 1, description: 'binds a path that is not there', sizeBytes: 1, buildMs: 1, builtAt: new Date().toISOString(), defaults: { memoryMiB: 256, cpus: 1 }, readonlyBinds: [{ source: probePath, target: '/opt/probe' }] }))
  await symlink('1', join(root, 'broken', 'current'))
  return root
}

/** What a client must never see. */
function assertNoLeak(message: string, dataDir: string): void {
  for (const leak of [probePath, dataDir, '/var/lib/sandstorm', tmpdir(), 'ENOENT', 'no such file or directory', 'runc', 'rootfs']) {
    assert.ok(!message.includes(leak), `the client saw "${leak}" in: ${message}`)
  }
  assert.match(message, /^an internal error happened; the server logged its cause as request req-[a-z0-9]{16}$/)
}

describe('errors that never leak', { skip, timeout: 120_000 }, () => {
  it('through up: the client sees the request id, the log the cause', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sandstorm-leak-'))
    const logs = captureLogs()
    let stack: Stack | undefined
    try {
      stack = await startStack({ templatesDir: await brokenTemplates(dir), logger: logs.logger })
      const err = await Sandbox.create('broken', { ...stack.conn }).then(() => assert.fail('the create succeeded'), (e: unknown) => e)
      assert.ok(err instanceof SandstormSdkError)
      assertNoLeak(err.message, stack.dataDir)
      const requestId = /request (req-[a-z0-9]{16})/.exec(err.message)![1]
      const logged = logs.records.find((r) => r.requestId === requestId && r.msg?.includes(probePath))
      assert.ok(logged, 'the log has the cause, under the request id')
    } finally {
      await stack?.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  describe('through a remote agent', () => {
    let dir: string
    let server: RunningServer
    let agent: RunningAgent
    const logs = captureLogs()
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'sandstorm-leak-fleet-'))
      server = await startServer({ dataDir: join(dir, 'server'), port: 0, logger: logs.logger, fleet: { host: '127.0.0.1', port: 0, insecure: true } })
      agent = await runAgent({ serverUrl: `127.0.0.1:${server.fleet!.port}`, token: server.fleet!.joinToken, dataDir: join(dir, 'agent'), templatesDir: await brokenTemplates(dir), insecure: true, logger: logs.logger })
      await until('a live agent', async () => (await listAgents({ apiUrl: server.url, apiKey: server.apiKey })).some((a) => a.state === 'live'))
    })
    after(async () => {
      await agent?.close()
      await server?.close()
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    it('the agent marks its error hidden, and the server shows the request id only', async () => {
      const err = await Sandbox.create('broken', { apiUrl: server.url, apiKey: server.apiKey }).then(() => assert.fail('the create succeeded'), (e: unknown) => e)
      assert.ok(err instanceof SandstormSdkError)
      assertNoLeak(err.message, dir)
      const requestId = /request (req-[a-z0-9]{16})/.exec(err.message)![1]
      assert.ok(logs.records.some((r) => r.requestId === requestId && r.msg?.includes(probePath)), 'the server logged the agent\'s message')
    })
  })
})
