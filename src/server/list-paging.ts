/**
 * Order and pages of a sandbox list (Sandstorm's and E2B's). A page ends at a position (start
 * time, then id), and the next page starts strictly after it, so paging neither repeats nor skips
 * a sandbox while others come and go. The token is that position and the order it was made for,
 * with a checksum so that a token edited by hand is refused instead of read as another position.
 */
import { createHash } from 'node:crypto'
import { idPattern, SandstormError, type SandboxListOrder } from '../shared/index.js'

/** Where a listed sandbox stands in the order. */
export interface ListPosition {
  startedAtMs: number
  id: string
}

/** One page and the position it ended at when more follow. */
export interface ListPage<T> {
  items: T[]
  /** The `nextToken` of the next page; absent on the last. */
  nextToken?: string
}

const compare = (a: ListPosition, b: ListPosition): number => a.startedAtMs - b.startedAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/** Sorts by start time (ties by id), oldest first for 'asc'. */
export function sortByStart<T>(items: T[], positionOf: (item: T) => ListPosition, order: SandboxListOrder): T[] {
  const sign = order === 'asc' ? 1 : -1
  return [...items].sort((a, b) => sign * compare(positionOf(a), positionOf(b)))
}

/**
 * The page of `limit` items after `nextToken` (from the start without one), of items already
 * sorted in `order`. `param` names the token in errors.
 */
export function pageAfter<T>(sorted: T[], positionOf: (item: T) => ListPosition, order: SandboxListOrder, limit: number, nextToken?: string, param = 'nextToken'): ListPage<T> {
  const sign = order === 'asc' ? 1 : -1
  const after = nextToken === undefined ? undefined : decodeListToken(nextToken, order, param)
  const rest = after ? sorted.filter((item) => sign * compare(positionOf(item), after) > 0) : sorted
  const items = rest.slice(0, limit)
  const last = items.at(-1)
  return rest.length > limit && last ? { items, nextToken: encodeListToken(positionOf(last), order) } : { items }
}

const checksum = (payload: string): string => createHash('sha256').update(payload).digest('hex').slice(0, 12)

/** The token of the page after `position` in `order`. */
export function encodeListToken(position: ListPosition, order: SandboxListOrder): string {
  const payload = `${order}.${position.startedAtMs}.${position.id}`
  return Buffer.from(`${payload}.${checksum(payload)}`).toString('base64url')
}

/** Reads a token; `invalid_argument` naming `param` when it is not one this server made for `order`. */
export function decodeListToken(token: string, order: SandboxListOrder, param = 'nextToken'): ListPosition {
  const bad = (why: string) => new SandstormError('invalid_argument', `${param}: expected a token from the previous page's X-Next-Token, got ${JSON.stringify(token.slice(0, 80))} (${why})`)
  const text = Buffer.from(token, 'base64url').toString('utf8')
  if (Buffer.from(text).toString('base64url') !== token) throw bad('not base64url')
  const [tokenOrder, at, id, sum, ...extra] = text.split('.')
  if (extra.length > 0 || sum === undefined || checksum(`${tokenOrder}.${at}.${id}`) !== sum) throw bad('it was altered')
  if (!/^\d{1,15}$/.test(at!) || !idPattern.test(id!)) throw bad('it was altered')
  if (tokenOrder !== order) throw bad(`it was made for order "${tokenOrder}", this request asks for "${order}"`)
  return { startedAtMs: Number(at), id: id! }
}

/** Whether a start time is within [after, before], either end open when not given. */
export function startedWithin(startedAtMs: number, afterMs?: number, beforeMs?: number): boolean {
  return (afterMs === undefined || startedAtMs >= afterMs) && (beforeMs === undefined || startedAtMs <= beforeMs)
}
