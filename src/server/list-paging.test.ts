import assert from 'node:assert/strict'
import { test } from 'node:test'
import { SandstormError } from '../shared/index.js'
import { decodeListToken, encodeListToken, pageAfter, sortByStart, startedWithin, type ListPosition } from './list-paging.js'

const item = (n: number, atMs = 1000 + Math.floor(n / 2)): ListPosition => ({ startedAtMs: atMs, id: `sb-${String(n).padStart(16, '0')}` })
const self = (p: ListPosition) => p

/** Every page of `items` in `order`, `limit` a page, with `between` run before each next page. */
function allPages(items: ListPosition[], order: 'asc' | 'desc', limit: number, between: (page: number) => void = () => {}): string[][] {
  const pages: string[][] = []
  let token: string | undefined
  do {
    const page = pageAfter(sortByStart(items, self, order), self, order, limit, token)
    pages.push(page.items.map((p) => p.id))
    token = page.nextToken
    between(pages.length)
  } while (token)
  return pages
}

test('sorts by start time, ties by id, both ways', () => {
  const items = [item(3), item(0), item(2), item(1)]
  assert.deepEqual(sortByStart(items, self, 'asc').map((p) => p.id.slice(-1)), ['0', '1', '2', '3'])
  assert.deepEqual(sortByStart(items, self, 'desc').map((p) => p.id.slice(-1)), ['3', '2', '1', '0'])
})

test('pages cover the list once, in order, the last page without a token', () => {
  const items = Array.from({ length: 7 }, (_, n) => item(n))
  assert.deepEqual(allPages(items, 'asc', 3), [[items[0]!.id, items[1]!.id, items[2]!.id], [items[3]!.id, items[4]!.id, items[5]!.id], [items[6]!.id]])
  assert.deepEqual(allPages(items, 'desc', 3).flat(), items.map((p) => p.id).reverse())
  // Exactly a page: no token pointing at an empty page.
  assert.equal(pageAfter(items.slice(0, 3), self, 'asc', 3).nextToken, undefined)
})

test('paging neither repeats nor skips a sandbox while others come and go', () => {
  const items = Array.from({ length: 6 }, (_, n) => item(n))
  const seen = allPages(items, 'asc', 2, (page) => {
    // After the first page: one already listed goes, one not yet listed goes, a newer one comes.
    if (page === 1) {
      items.splice(items.findIndex((p) => p.id === item(0).id), 1)
      items.splice(items.findIndex((p) => p.id === item(4).id), 1)
      items.push(item(9, 5000))
    }
  }).flat()
  assert.deepEqual(seen, [item(0).id, item(1).id, item(2).id, item(3).id, item(5).id, item(9).id])
})

test('a token edited by hand, garbage, or made for the other order is refused naming the param', () => {
  const token = encodeListToken(item(4), 'asc')
  assert.deepEqual(decodeListToken(token, 'asc'), item(4))
  const refused = (t: string, order: 'asc' | 'desc', why: RegExp) =>
    assert.throws(() => decodeListToken(t, order), (err: unknown) => err instanceof SandstormError && err.code === 'invalid_argument' && /^nextToken: expected a token/.test(err.message) && why.test(err.message))
  const text = Buffer.from(token, 'base64url').toString()
  refused(Buffer.from(text.replace('.1002.', '.1003.')).toString('base64url'), 'asc', /altered/)
  refused(Buffer.from(`${text}.x`).toString('base64url'), 'asc', /altered/)
  refused('not a token!', 'asc', /base64url/)
  refused('MTIz', 'asc', /altered/)
  refused(token, 'desc', /made for order "asc", this request asks for "desc"/)
})

test('startedWithin takes both ends as inclusive and either as open', () => {
  assert.equal(startedWithin(10, 10, 10), true)
  assert.equal(startedWithin(9, 10), false)
  assert.equal(startedWithin(11, undefined, 10), false)
  assert.equal(startedWithin(11), true)
})
