import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startTestServer, type TestServer } from './test-server.fixture.js'

/** Sandstorm's list and E2B's over the fake agent: every filter, both orders, paging, and bad input. */
describe('sandbox lists', () => {
  let t: TestServer
  const ids: string[] = []
  let middleMs = 0

  before(async () => {
    t = await startTestServer()
    for (const [i, template] of ['debian', 'host', 'debian', 'host', 'debian'].entries()) {
      const res = await t.request('POST', '/v1/sandboxes', { body: { template, labels: { suite: 'list', n: String(i), even: String(i % 2 === 0) } } })
      assert.equal(res.status, 201)
      ids.push(res.json.id)
      // A start time strictly between the second and the third.
      if (i === 1) {
        const at = Date.now()
        while (Date.now() <= at + 1);
        middleMs = Date.now()
        while (Date.now() <= middleMs + 1);
      }
    }
  })
  after(async () => {
    await t?.close()
  })

  const v1 = async (query: string) => {
    const res = await t.request('GET', `/v1/sandboxes?${query}`)
    assert.equal(res.status, 200, res.body.toString())
    return { ids: (res.json as { id: string }[]).map((s) => s.id), next: res.headers['x-next-token'] as string | undefined }
  }
  const e2b = async (path: string) => {
    const res = await t.request('GET', path, { headers: { 'x-api-key': t.server.apiKey } })
    assert.equal(res.status, 200, res.body.toString())
    return { ids: (res.json as { sandboxID: string }[]).map((s) => s.sandboxID), next: res.headers['x-next-token'] as string | undefined, running: res.headers['x-total-running'] }
  }

  it('Sandstorm: oldest first by default, newest first with order=desc, filters combined', async () => {
    assert.deepEqual((await v1('label=suite=list')).ids, ids)
    assert.deepEqual((await v1('label=suite=list&order=desc')).ids, [...ids].reverse())
    assert.deepEqual((await v1('label=suite=list&template=host')).ids, [ids[1], ids[3]])
    assert.deepEqual((await v1('label=suite=list&label=even=true&template=debian')).ids, [ids[0], ids[2], ids[4]])
    const middle = new Date(middleMs).toISOString()
    assert.deepEqual((await v1(`label=suite=list&startedAfter=${middle}`)).ids, ids.slice(2))
    assert.deepEqual((await v1(`label=suite=list&startedBefore=${middle}&template=host`)).ids, [ids[1]])
    assert.deepEqual((await v1('label=suite=list&state=running,paused')).ids, ids)
    assert.deepEqual((await v1('label=suite=list&state=paused&state=stopped')).ids, [])
  })

  it('Sandstorm: pages of `limit` with X-Next-Token, in either order', async () => {
    for (const order of ['asc', 'desc'] as const) {
      const seen: string[][] = []
      let token: string | undefined
      do {
        const page = await v1(`label=suite=list&limit=2&order=${order}${token ? `&nextToken=${token}` : ''}`)
        seen.push(page.ids)
        token = page.next
      } while (token)
      assert.deepEqual(seen.map((p) => p.length), [2, 2, 1])
      assert.deepEqual(seen.flat(), order === 'asc' ? ids : [...ids].reverse())
    }
  })

  it('Sandstorm: bad values answer 400 naming the parameter', async () => {
    const cases: [string, RegExp][] = [
      ['state=running,bogus', /^state: expected one of "starting", "running", "paused", "stopped", "lost" \(or several, comma-separated\), got "running,bogus"/],
      ['limit=abc', /^limit: expected an integer from 1 to 1000, got "abc"/],
      ['limit=0', /^limit: expected an integer from 1 to 1000/],
      ['order=sideways', /^order: expected one of "asc", "desc"/],
      ['startedAfter=yesterday', /^startedAfter: expected an ISO 8601 time/],
      ['startedAfter=2026-01-02T00:00:00Z&startedBefore=2026-01-01T00:00:00Z', /^startedBefore: expected a time at or after startedAfter/],
      ['nextToken=xyz', /^nextToken: expected a token from the previous page's X-Next-Token/],
      ['colour=red', /unknown field "colour"/],
    ]
    for (const [query, message] of cases) {
      const res = await t.request('GET', `/v1/sandboxes?${query}`)
      assert.equal(res.status, 400, query)
      assert.match(res.json.message, message, query)
    }
  })

  it('E2B: newest first, every filter the SDK sends, X-Total-Running', async () => {
    const metadata = encodeURIComponent('suite=list')
    const all = await e2b(`/v2/sandboxes?metadata=${metadata}`)
    assert.deepEqual(all.ids, [...ids].reverse())
    assert.ok(Number(all.running) >= 5)
    assert.deepEqual((await e2b(`/v2/sandboxes?metadata=${metadata}&order=asc`)).ids, ids)
    assert.deepEqual((await e2b(`/v2/sandboxes?metadata=${metadata}&template=host&order=asc`)).ids, [ids[1], ids[3]])
    assert.deepEqual((await e2b(`/v2/sandboxes?metadata=${metadata}&startedAfter=${new Date(middleMs).toISOString()}&order=asc`)).ids, ids.slice(2))
    assert.deepEqual((await e2b(`/v2/sandboxes?metadata=${encodeURIComponent('suite=list&even=false')}`)).ids, [ids[3], ids[1]])
    assert.deepEqual((await e2b(`/v2/sandboxes?metadata=${metadata}&state=paused`)).ids, [])
    assert.deepEqual((await e2b(`/v2/sandboxes?metadata=${metadata}&state=running,paused&order=asc`)).ids, ids)
    // The deprecated list: the same filters, all at once.
    assert.deepEqual((await e2b(`/sandboxes?metadata=${metadata}&template=debian`)).ids, [ids[4], ids[2], ids[0]])
    const pages: string[] = []
    let token: string | undefined
    do {
      const page = await e2b(`/v2/sandboxes?metadata=${metadata}&limit=2${token ? `&nextToken=${token}` : ''}`)
      pages.push(...page.ids)
      token = page.next
    } while (token)
    assert.deepEqual(pages, [...ids].reverse())
  })

  it('E2B: bad values answer 400 naming the parameter', async () => {
    const cases: [string, RegExp][] = [
      ['state=bogus', /^state: expected "running", "paused" or both, comma-separated, got "bogus"/],
      ['limit=abc', /^limit: expected an integer from 1 to 100, got "abc"/],
      ['limit=101', /^limit: expected an integer from 1 to 100/],
      ['order=up', /^order: expected one of "asc", "desc"/],
      ['startedAfter=not-a-time', /^startedAfter: expected an ISO 8601 time/],
      ['nextToken=tampered', /^nextToken: expected a token/],
      ['metadata=a%3D%25zz', /^metadata: expected URL-encoded key=value pairs/],
    ]
    for (const [query, message] of cases) {
      const res = await t.request('GET', `/v2/sandboxes?${query}`, { headers: { 'x-api-key': t.server.apiKey } })
      assert.equal(res.status, 400, query)
      assert.equal(res.json.code, 400)
      assert.match(res.json.message, message, query)
    }
  })
})
