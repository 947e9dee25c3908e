import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createFakeAgent, type FakeAgent } from './fake-agent.fixture.js'
import { startTestServer, type TestServer } from './test-server.fixture.js'

/** A fake agent that counts its resumes. */
function countingAgent(): FakeAgent & { resumes: string[] } {
  const agent = createFakeAgent() as FakeAgent & { resumes: string[] }
  agent.resumes = []
  const resume = agent.resume.bind(agent)
  agent.resume = async (id, call) => {
    agent.resumes.push(id)
    return resume(id, call)
  }
  return agent
}

/** An E2B create; answers the sandbox's id and envd access token. */
async function e2bCreate(t: TestServer, body: Record<string, unknown>): Promise<{ id: string; token: string }> {
  const res = await t.request('POST', '/v2/sandboxes', { body: { templateID: 'host', ...body } })
  assert.equal(res.status, 201, JSON.stringify(res.json))
  return { id: res.json.sandboxID, token: res.json.envdAccessToken }
}

test('onTimeout pause: the sandbox is paused at its timeout, kept long, and its policy is shown and survives a restart', async () => {
  const t = await startTestServer()
  try {
    const { id } = await e2bCreate(t, { timeout: 1, autoPause: true })
    await t.logs.waitFor((r) => r.msg === 'sandbox paused' && r.sandboxId === id && r.reason === 'timeout')
    const info = (await t.request('GET', `/sandboxes/${id}`)).json
    assert.equal(info.state, 'paused')
    assert.deepEqual(info.lifecycle, { onTimeout: 'pause', autoResume: false })
    assert.ok(Date.parse(info.endAt) - Date.now() > 24 * 3600_000, 'kept as long as a manual pause')
    assert.equal(t.agent.sandboxes.get(id)!.sandbox.status, 'paused')

    const killed = await e2bCreate(t, { timeout: 1 })
    await t.agent.destroyed(killed.id)
    assert.equal((await t.request('GET', `/sandboxes/${killed.id}`)).status, 404, 'without autoPause it is killed')

    await t.restart()
    assert.deepEqual((await t.request('GET', `/sandboxes/${id}`)).json.lifecycle, { onTimeout: 'pause', autoResume: false })
  } finally {
    await t.close()
  }
})

test('autoResume: a burst of envd calls to a paused sandbox resumes it once; a wrong token or no autoResume wakes nothing', async () => {
  const agent = countingAgent()
  const t = await startTestServer({ agent })
  try {
    const { id, token } = await e2bCreate(t, { timeout: 300, autoPause: true, autoResume: { enabled: true } })
    assert.equal((await t.request('POST', `/sandboxes/${id}/pause`)).status, 204)
    const health = (presented: string) => t.request('GET', '/health', { key: null, headers: { 'e2b-sandbox-id': id, 'x-access-token': presented } })

    assert.equal((await health('wrong')).status, 401)
    assert.deepEqual(agent.resumes, [], 'a caller without the token wakes nothing')
    const answers = await Promise.all(Array.from({ length: 5 }, () => health(token)))
    assert.deepEqual(answers.map((a) => a.status), [204, 204, 204, 204, 204])
    assert.deepEqual(agent.resumes, [id], 'resumed once')
    const info = (await t.request('GET', `/sandboxes/${id}`)).json
    assert.equal(info.state, 'running')
    const lifeMs = Date.parse(info.endAt) - Date.now()
    assert.ok(lifeMs > 200_000 && lifeMs <= 300_000, `its own timeout (300 s) starts again, got ${lifeMs} ms`)

    const plain = await e2bCreate(t, { timeout: 300, autoPause: true })
    await t.request('POST', `/sandboxes/${plain.id}/pause`)
    const res = await t.request('GET', '/health', { key: null, headers: { 'e2b-sandbox-id': plain.id, 'x-access-token': plain.token } })
    assert.equal(res.status, 502, 'envd of a paused sandbox without autoResume answers as E2B\'s proxy')
    assert.deepEqual(agent.resumes, [id])
  } finally {
    await t.close()
  }
})

test('autoResume without autoPause, and a fork or snapshot of an unknown sandbox, are clear errors', async () => {
  const t = await startTestServer()
  try {
    const bad = await t.request('POST', '/v2/sandboxes', { body: { templateID: 'host', autoResume: { enabled: true } } })
    assert.equal(bad.status, 400)
    assert.match(bad.json.message, /^autoResume\.enabled: expected it only with autoPause true/)
    const fork = await t.request('POST', '/sandboxes/sb-nosuchsandbox00/fork', { body: { count: 2 } })
    assert.equal(fork.status, 404)
    const zero = await t.request('POST', '/sandboxes/sb-nosuchsandbox00/fork', { body: { count: 0 } })
    assert.deepEqual([zero.status, zero.json.message], [400, 'count: expected an integer from 1 to 256, got 0'])
    const list = await t.request('GET', '/snapshots')
    assert.deepEqual([list.status, list.json], [200, []], 'a server without snapshots lists none')
    const token = await t.request('GET', '/snapshots?nextToken=bm90IGEgbnVtYmVy')
    assert.deepEqual([token.status, token.json.message], [400, 'nextToken: expected a token from X-Next-Token, got "bm90IGEgbnVtYmVy"'])
    assert.equal((await t.request('DELETE', '/templates/snap-nosuchsnapshot0')).status, 404)
  } finally {
    await t.close()
  }
})
