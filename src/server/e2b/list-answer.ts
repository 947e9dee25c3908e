/**
 * E2B's sandbox list (GET /sandboxes, GET /v2/sandboxes) with every query parameter SDK 2.51 sends:
 * `metadata`, `state` (a comma list), `template`, `startedAfter`, `order`, `limit` and `nextToken`
 * (and `startedBefore`, which the SDK does not send), all filters combined. Paging follows the
 * order across the whole result and stays right while sandboxes come and go (list-paging.ts).
 */
import type { Context } from 'hono'
import { z } from 'zod'
import { isoInstant, SandstormError } from '../../shared/index.js'
import type { SandboxInfo } from '../../shared/index.js'
import type { ServerEnv } from '../context.js'
import { pageAfter, sortByStart, startedWithin, type ListPosition } from '../list-paging.js'
import { parseInput } from '../validation.js'

/** E2B's largest page, and its default. */
const maxE2bLimit = 100

const e2bStates = ['running', 'paused'] as const

const listQuery = z.looseObject({
  metadata: z.string().optional(),
  state: z.string().regex(/^(running|paused)(,(running|paused))*$/, '"running", "paused" or both, comma-separated').optional(),
  template: z.string().min(1).optional(),
  startedAfter: isoInstant.optional(),
  startedBefore: isoInstant.optional(),
  order: z.enum(['asc', 'desc']).optional(),
  limit: z.coerce.number().int().min(1).max(maxE2bLimit).optional(),
  nextToken: z.string().min(1).optional(),
})

/** How the list route sees a sandbox. */
export interface ListAnswerOptions<T> {
  /** GET /v2/sandboxes pages; the old GET /sandboxes answers everything at once. */
  paged: boolean
  /** The Sandstorm template an E2B template name stands for. */
  templateOf(name: string): string
  /** A sandbox as E2B lists it. */
  detail(info: SandboxInfo): T
}

/** Answers a list request over the sandboxes E2B would show (running and paused ones). */
export function listAnswer<T>(c: Context<ServerEnv>, shown: SandboxInfo[], options: ListAnswerOptions<T>): Response {
  // The SDK joins `state` with commas; other clients may repeat it.
  const raw = Object.fromEntries(Object.entries(c.req.queries()).map(([k, v]) => [k, k === 'state' ? v.join(',') : v.at(-1)]))
  const query = parseInput(listQuery, raw)
  const states = new Set(query.state?.split(',') ?? e2bStates)
  const metadata = Object.entries(metadataOf(query.metadata))
  const afterMs = query.startedAfter === undefined ? undefined : Date.parse(query.startedAfter)
  const beforeMs = query.startedBefore === undefined ? undefined : Date.parse(query.startedBefore)
  if (afterMs !== undefined && beforeMs !== undefined && beforeMs < afterMs) {
    throw new SandstormError('invalid_argument', `startedBefore: expected a time at or after startedAfter (${query.startedAfter}), got ${query.startedBefore}`)
  }
  const template = query.template
  const templates = template === undefined ? undefined : new Set([template, options.templateOf(template)])
  const found = shown.filter(
    (s) =>
      states.has(s.state === 'paused' ? 'paused' : 'running') &&
      metadata.every(([k, v]) => s.labels[k] === v) &&
      (!templates || templates.has(s.template)) &&
      startedWithin(Date.parse(s.createdAt), afterMs, beforeMs),
  )
  // Newest first unless asked otherwise, as E2B lists them.
  const order = query.order ?? 'desc'
  const sorted = sortByStart(found, positionOf, order)
  if (!options.paged) return c.json(sorted.map(options.detail))
  const page = pageAfter(sorted, positionOf, order, query.limit ?? maxE2bLimit, query.nextToken)
  if (page.nextToken) c.header('X-Next-Token', page.nextToken)
  c.header('X-Total-Running', String(shown.filter((s) => s.state !== 'paused').length))
  return c.json(page.items.map(options.detail))
}

const positionOf = (s: SandboxInfo): ListPosition => ({ startedAtMs: Date.parse(s.createdAt), id: s.id })

/**
 * E2B's metadata filter: a query string (`user=abc&app=prod`) whose keys and values were each
 * URL-encoded once more by the SDK, so they are decoded twice.
 */
function metadataOf(text: string | undefined): Record<string, string> {
  if (!text) return {}
  const out: Record<string, string> = {}
  for (const [k, v] of new URLSearchParams(text)) {
    try {
      out[decodeURIComponent(k)] = decodeURIComponent(v)
    } catch {
      throw new SandstormError('invalid_argument', `metadata: expected URL-encoded key=value pairs joined by &, got ${JSON.stringify(text.slice(0, 80))}`)
    }
  }
  return out
}
