/**
 * Listing sandboxes with the unmodified `e2b` SDK (Sandbox.list and its paginator) and Sandstorm's
 * SDK against a real stack: order, startedAfter/startedBefore, template, metadata and state filters
 * combined, paging over several pages with a small limit while sandboxes come and go, and bad
 * values answered with a 400 that names the parameter (the SDK's SandboxError).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { Sandbox, SandboxError, type SandboxInfo as E2bInfo, type SandboxListOpts } from 'e2b'
import { InvalidArgumentError, Sandbox as SandstormSandbox } from '@sandstorm/sdk'
import { useStackForE2b } from './helpers/e2b-env.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason()

describe('e2b SDK: list with every filter, order and paging', { skip: skip ?? false }, () => {
  let stack: Stack
  const suite = `list-${randomBytes(4).toString('hex')}`
  /** Oldest first: base, debian, base, debian. */
  const made: Sandbox[] = []
  let middle: Date

  before(async () => {
    stack = await startStack()
    useStackForE2b(stack)
    for (const [n, template] of ['base', 'debian', 'base', 'debian'].entries()) {
      made.push(await Sandbox.create(template, { metadata: { suite, n: String(n), half: n < 2 ? 'first' : 'second' }, timeoutMs: 600_000 }))
      // A start time strictly between the second and the third, from the server's own records.
      if (n === 1) middle = new Date((await made[1]!.getInfo()).startedAt.getTime() + 1)
    }
  })
  after(async () => {
    for (const s of made) await s.kill().catch(() => undefined)
    await stack?.close()
  })

  const ids = (n: number[]) => n.map((i) => made[i]!.sandboxId)
  /** Every page of a list, each page's ids. */
  async function pages(opts: SandboxListOpts = {}): Promise<string[][]> {
    const pager = Sandbox.list({ ...opts, query: { metadata: { suite }, ...opts.query } })
    const out: string[][] = []
    while (pager.hasNext) out.push((await pager.nextItems()).map((s: E2bInfo) => s.sandboxId))
    return out
  }

  test('newest first by default, oldest first with order asc', async () => {
    assert.deepEqual((await pages()).flat(), ids([3, 2, 1, 0]))
    assert.deepEqual((await pages({ order: 'asc' })).flat(), ids([0, 1, 2, 3]))
    const [first] = await Sandbox.list({ query: { metadata: { suite } }, order: 'asc', limit: 1 }).nextItems()
    assert.equal(first!.templateId, 'base')
    assert.equal(first!.startedAt.getTime() <= middle.getTime(), true)
  })

  test('template, startedAfter and metadata filters, combined', async () => {
    assert.deepEqual((await pages({ query: { template: 'debian' } })).flat(), ids([3, 1]))
    assert.deepEqual((await pages({ query: { startedAfter: middle }, order: 'asc' })).flat(), ids([2, 3]))
    assert.deepEqual((await pages({ query: { startedAfter: middle, template: 'base' } })).flat(), ids([2]))
    assert.deepEqual((await pages({ query: { metadata: { suite, half: 'first' }, template: 'base' } })).flat(), ids([0]))
    assert.deepEqual((await pages({ query: { metadata: { suite, half: 'none' } } })).flat(), [])
    // startedBefore is not in SDK 2.51; the server honours it for other clients.
    const res = await fetch(`${stack.server.url}/v2/sandboxes?order=asc&startedBefore=${middle.toISOString()}&metadata=${encodeURIComponent(`suite=${suite}`)}`, { headers: { 'x-api-key': process.env.E2B_API_KEY! } })
    assert.deepEqual(((await res.json()) as { sandboxID: string }[]).map((s) => s.sandboxID), ids([0, 1]))
  })

  test('state filters: running, paused, both', async () => {
    await made[2]!.pause()
    try {
      assert.deepEqual((await pages({ query: { state: ['paused'] } })).flat(), ids([2]))
      assert.deepEqual((await pages({ query: { state: ['running'] }, order: 'asc' })).flat(), ids([0, 1, 3]))
      assert.deepEqual((await pages({ query: { state: ['running', 'paused'], template: 'base' } })).flat(), ids([2, 0]))
    } finally {
      await Sandbox.connect(made[2]!.sandboxId)
    }
  })

  test('paging with limit 1 covers every sandbox once while sandboxes come and go', async () => {
    assert.deepEqual((await pages({ limit: 3 })).map((p) => p.length), [3, 1])
    const pager = Sandbox.list({ query: { metadata: { suite } }, order: 'asc', limit: 1 })
    const seen: string[] = []
    seen.push(...(await pager.nextItems()).map((s) => s.sandboxId))
    // Between pages: one already listed and one not yet listed go, one newer comes.
    const newer = await Sandbox.create('base', { metadata: { suite, n: '4', half: 'second' }, timeoutMs: 600_000 })
    made.push(newer)
    await made[0]!.kill()
    await made[2]!.kill()
    while (pager.hasNext) seen.push(...(await pager.nextItems()).map((s) => s.sandboxId))
    assert.deepEqual(seen, ids([0, 1, 3, 4]))
  })

  test('bad values are a 400 naming the parameter, as the SDK raises it', async () => {
    const refused = (opts: SandboxListOpts, message: RegExp) =>
      assert.rejects(Sandbox.list(opts).nextItems(), (err: unknown) => err instanceof SandboxError && message.test(err.message))
    await refused({ query: { state: ['bogus' as 'running'] } }, /^400: state: expected "running", "paused" or both/)
    await refused({ limit: 101 }, /^400: limit: expected an integer from 1 to 100, got "101"/)
    await refused({ limit: 0 }, /^400: limit: expected an integer from 1 to 100, got "0"/)
    await refused({ nextToken: 'not-a-token' }, /^400: nextToken: expected a token from the previous page's X-Next-Token/)
    await refused({ order: 'sideways' as 'asc' }, /^400: order: expected one of "asc", "desc", got "sideways"/)
    // A token made for one order is refused for the other, and one edited by hand is refused.
    const res = await fetch(`${stack.server.url}/v2/sandboxes?limit=1&metadata=${encodeURIComponent(`suite=${suite}`)}`, { headers: { 'x-api-key': process.env.E2B_API_KEY! } })
    const next = res.headers.get('x-next-token')!
    assert.ok(next)
    await refused({ order: 'asc', nextToken: next }, /^400: nextToken: .*made for order "desc", this request asks for "asc"/)
    const edited = Buffer.from(Buffer.from(next, 'base64url').toString().replace(/\.(\d)/, (_m, d: string) => `.${(Number(d) + 1) % 10}`)).toString('base64url')
    await refused({ nextToken: edited }, /^400: nextToken: .*altered/)
    const badTime = await fetch(`${stack.server.url}/v2/sandboxes?startedAfter=yesterday`, { headers: { 'x-api-key': process.env.E2B_API_KEY! } })
    assert.equal(badTime.status, 400)
    assert.match(((await badTime.json()) as { message: string }).message, /^startedAfter: expected an ISO 8601 time/)
  })

  test("Sandstorm's SDK: the same filters, order and pages", async () => {
    const conn = stack.conn
    const labels = { suite }
    const live = ids([1, 3, 4])
    assert.deepEqual((await SandstormSandbox.list({ ...conn, labels })).map((s) => s.id), live)
    assert.deepEqual((await SandstormSandbox.list({ ...conn, labels, order: 'desc' })).map((s) => s.id), [...live].reverse())
    assert.deepEqual((await SandstormSandbox.list({ ...conn, labels, template: 'debian' })).map((s) => s.id), ids([1, 3]))
    assert.deepEqual((await SandstormSandbox.list({ ...conn, labels, startedAfter: middle })).map((s) => s.id), ids([3, 4]))
    assert.deepEqual((await SandstormSandbox.list({ ...conn, labels, startedBefore: middle })).map((s) => s.id), ids([1]))
    assert.deepEqual((await SandstormSandbox.list({ ...conn, labels, state: ['running', 'paused'], template: 'base' })).map((s) => s.id), ids([4]))
    const seen: string[] = []
    let nextToken: string | undefined
    do {
      const page = await SandstormSandbox.listPage({ ...conn, labels, limit: 2, ...(nextToken ? { nextToken } : {}) })
      seen.push(...page.sandboxes.map((s) => s.id))
      nextToken = page.nextToken
    } while (nextToken)
    assert.deepEqual(seen, live)
    await assert.rejects(SandstormSandbox.listPage({ ...conn, limit: 2, nextToken: 'garbage' }), (err: unknown) => err instanceof InvalidArgumentError && /^nextToken: /.test(err.message))
  })
})
