/**
 * The unmodified `e2b` SDK against a real Sandstorm (server, local agent, runc): sandbox
 * lifecycle over E2B's REST API, configured only through E2B_* environment variables.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { AuthenticationError, NotFoundError, Sandbox } from 'e2b'
import { e2bSuite } from './helpers/e2b-env.js'
import { skipReason } from './helpers/stack.js'

const skip = skipReason()

describe('e2b SDK: lifecycle', { skip: skip ?? false }, () => {
  const suite = e2bSuite()

  test('keys are in E2B form', () => {
    assert.match(process.env.E2B_API_KEY!, /^e2b_[0-9a-f]{40}$/)
  })

  test('create, getInfo, connect, list with metadata and paging, setTimeout, kill', async () => {
    const a = await Sandbox.create({ metadata: { suite: 'lifecycle', which: 'a' } })
    const b = await Sandbox.create('base', { metadata: { suite: 'lifecycle', which: 'b' }, timeoutMs: 120_000 })
    try {
      const info = await a.getInfo()
      assert.equal(info.sandboxId, a.sandboxId)
      assert.equal(info.templateId, 'base')
      assert.equal(info.state, 'running')
      assert.deepEqual(info.metadata, { suite: 'lifecycle', which: 'a' })

      const again = await Sandbox.connect(a.sandboxId)
      assert.equal((await again.commands.run('echo connected')).stdout, 'connected\n')

      const onlyB = await Sandbox.list({ query: { metadata: { which: 'b' } } }).nextItems()
      assert.deepEqual(onlyB.map((s) => s.sandboxId), [b.sandboxId])

      const pager = Sandbox.list({ query: { metadata: { suite: 'lifecycle' } }, limit: 1 })
      const seen: string[] = []
      while (pager.hasNext) seen.push(...(await pager.nextItems()).map((s) => s.sandboxId))
      assert.deepEqual(seen.sort(), [a.sandboxId, b.sandboxId].sort())

      const before = (await b.getInfo()).endAt.getTime()
      await b.setTimeout(600_000)
      assert.ok((await b.getInfo()).endAt.getTime() > before, 'setTimeout extends the end')

      assert.equal(await a.isRunning(), true)
      await a.kill()
      assert.equal(await Sandbox.kill(a.sandboxId), false, 'a second kill finds nothing')
      await assert.rejects(Sandbox.getInfo(a.sandboxId), NotFoundError)
      assert.equal(await a.isRunning(), false)
    } finally {
      await a.kill().catch(() => undefined)
      await b.kill().catch(() => undefined)
    }
  })

  test('a sandbox past its timeout is gone', async () => {
    const sbx = await Sandbox.create({ timeoutMs: 1_000 })
    // Wait on the sandbox's end: the commands stream fails once it is destroyed.
    await assert.rejects(sbx.commands.run('sleep 30', { timeoutMs: 0 }))
    await assert.rejects(Sandbox.getInfo(sbx.sandboxId), NotFoundError)
  })

  test('pause freezes, connect resumes, files are kept', async () => {
    const sbx = await Sandbox.create()
    try {
      await sbx.files.write('/home/user/kept.txt', 'still here')
      assert.equal(await sbx.pause(), true)
      assert.equal((await sbx.getInfo()).state, 'paused')
      assert.equal(await Sandbox.pause(sbx.sandboxId), false, 'pausing a paused sandbox reports false')
      const paused = await Sandbox.list({ query: { state: ['paused'] } }).nextItems()
      assert.deepEqual(paused.map((s) => s.sandboxId), [sbx.sandboxId])
      // As E2B's proxy answers for a paused sandbox (no autoResume).
      await assert.rejects(sbx.commands.run('true'), NotFoundError, 'a paused sandbox runs nothing')

      const resumed = await Sandbox.connect(sbx.sandboxId)
      assert.equal((await resumed.getInfo()).state, 'running')
      assert.equal(await resumed.files.read('/home/user/kept.txt'), 'still here')
    } finally {
      await sbx.kill().catch(() => undefined)
    }
  })

  test('errors: a bad key is a 401, an unknown sandbox is NotFoundError', async () => {
    await assert.rejects(Sandbox.create({ apiKey: 'e2b_0000000000000000000000000000000000000000' }), AuthenticationError)
    await assert.rejects(Sandbox.list({ apiKey: 'e2b_bad' }).nextItems(), AuthenticationError)
    await assert.rejects(Sandbox.connect('sb-doesnotexist0000'), NotFoundError)
    await assert.rejects(Sandbox.getInfo('sb-doesnotexist0000'), NotFoundError)
    await assert.rejects(Sandbox.create('no-such-template'), /404|not found|unknown template/i)
  })

  test('envd calls need the sandbox access token; a gone sandbox answers 502', async () => {
    const sbx = await Sandbox.create()
    const url = `${suite.stack.server.url}/health`
    const { envdAccessToken } = await (
      await fetch(`${suite.stack.server.url}/sandboxes/${sbx.sandboxId}/connect`, { method: 'POST', headers: { 'x-api-key': process.env.E2B_API_KEY!, 'content-type': 'application/json' }, body: '{}' })
    ).json() as { envdAccessToken: string }
    const health = (token: string) => fetch(url, { headers: { 'e2b-sandbox-id': sbx.sandboxId, 'x-access-token': token } })
    assert.equal((await health('wrong')).status, 401)
    assert.equal((await health(envdAccessToken)).status, 204)
    await sbx.kill()
    assert.equal((await health(envdAccessToken)).status, 502)
  })

  test("Sandstorm's own API keeps working beside it", async () => {
    const health = await fetch(`${suite.stack.server.url}/healthz`)
    assert.equal(health.status, 200)
    const list = await fetch(`${suite.stack.server.url}/v1/sandboxes`, { headers: { authorization: `Bearer ${suite.stack.server.apiKey}` } })
    assert.equal(list.status, 200)
    const e2bKeyOnV1 = await fetch(`${suite.stack.server.url}/v1/sandboxes`, { headers: { 'x-api-key': process.env.E2B_API_KEY! } })
    assert.equal(e2bKeyOnV1.status, 200, 'an E2B key is a key of this server')
  })
})
