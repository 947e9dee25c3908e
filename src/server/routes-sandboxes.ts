import type { Hono } from 'hono'
import { createSandboxBody, listSandboxesQuery, maxListLimit, metricsQuery, SandstormError, setTimeoutBody } from '../shared/index.js'
import type { SandboxInfo } from '../shared/index.js'
import type { RouteDeps, ServerEnv } from './context.js'
import { pageAfter, sortByStart, startedWithin, type ListPosition } from './list-paging.js'
import { bodyOf } from './request-input.js'
import { parseInput, show } from './validation.js'

const positionOf = (s: SandboxInfo): ListPosition => ({ startedAtMs: Date.parse(s.createdAt), id: s.id })

/** What the sandbox routes need beyond the routes' deps: a place to count a delete that goes on after its answer. */
export interface SandboxRouteDeps extends RouteDeps {
  /** Called with work that outlives its request, so that close() waits for it. */
  track(work: Promise<unknown>): void
}

/** Create, list, get, extend and delete sandboxes. */
export function sandboxRoutes(app: Hono<ServerEnv>, deps: SandboxRouteDeps): void {
  const { sandboxes } = deps

  app.post('/v1/sandboxes', async (c) => {
    const body = await bodyOf(c, createSandboxBody)
    const info = await sandboxes.create(body, { signal: c.var.signal })
    return c.json({ ...info, ...deps.ingressOf(info) }, 201)
  })

  app.get('/v1/sandboxes', (c) => {
    // `label` and `state` may repeat (`state` may also be a comma list); every other key counts
    // once, so its last value is what is checked.
    const raw = Object.fromEntries(
      Object.entries(c.req.queries()).map(([k, v]) => [k, k === 'label' ? v : k === 'state' ? v.join(',') : v.at(-1)]),
    )
    const query = parseInput(listSandboxesQuery, raw)
    const labels = Object.fromEntries((query.label ?? []).map((pair) => {
      const at = pair.indexOf('=')
      return [pair.slice(0, at), pair.slice(at + 1)]
    }))
    const states = query.state && new Set(query.state.split(','))
    const afterMs = query.startedAfter === undefined ? undefined : Date.parse(query.startedAfter)
    const beforeMs = query.startedBefore === undefined ? undefined : Date.parse(query.startedBefore)
    if (afterMs !== undefined && beforeMs !== undefined && beforeMs < afterMs) {
      throw new SandstormError('invalid_argument', `startedBefore: expected a time at or after startedAfter (${query.startedAfter}), got ${query.startedBefore}`)
    }
    const order = query.order ?? 'asc'
    const found = sandboxes
      .list({ labels })
      .filter((s) => (!states || states.has(s.state)) && (!query.template || s.template === query.template) && startedWithin(Date.parse(s.createdAt), afterMs, beforeMs))
    const sorted = sortByStart(found, positionOf, order)
    if (query.limit === undefined && query.nextToken === undefined) return c.json(sorted)
    const page = pageAfter(sorted, positionOf, order, query.limit ?? maxListLimit, query.nextToken)
    if (page.nextToken) c.header('X-Next-Token', page.nextToken)
    return c.json(page.items)
  })

  app.get('/v1/sandboxes/:id', (c) => {
    const info = sandboxes.get(c.req.param('id'))
    return c.json({ ...info, ...deps.ingressOf(info) })
  })

  // The series sampled every few seconds, from the sandbox's start (or `start`) to now (or `end`).
  app.get('/v1/sandboxes/:id/metrics', (c) => {
    const info = sandboxes.get(c.req.param('id'))
    const query = parseInput(metricsQuery, Object.fromEntries(Object.entries(c.req.queries()).map(([k, v]) => [k, v.at(-1)])))
    const startMs = query.start === undefined ? Date.parse(info.createdAt) : Date.parse(query.start)
    const endMs = query.end === undefined ? Date.now() : Date.parse(query.end)
    if (endMs < startMs) throw new SandstormError('invalid_argument', `end: expected a time at or after start (${new Date(startMs).toISOString()}), got ${new Date(endMs).toISOString()}`)
    return c.json(deps.usageHistory.range(info.id, startMs, endMs))
  })

  // One sample taken now, CPU since the previous one asked for here.
  app.get('/v1/sandboxes/:id/usage', async (c) => c.json(await sandboxes.usage(c.req.param('id'), { signal: c.var.signal })))

  // ?wait=false answers 202 once the sandbox is marked for removal; the destroy goes on under the
  // server, so a client (the CLI's `run`) need not wait for it, nor can its going away stop it.
  app.delete('/v1/sandboxes/:id', async (c) => {
    const wait = c.req.query('wait')
    if (wait !== undefined && wait !== 'true' && wait !== 'false') throw new SandstormError('invalid_argument', `wait: expected true or false, got ${show(wait)}`)
    if (wait === 'false') {
      deps.track(sandboxes.markForRemoval(c.req.param('id')))
      return c.body(null, 202)
    }
    await sandboxes.destroy(c.req.param('id'), { signal: c.var.signal })
    return c.body(null, 204)
  })

  app.post('/v1/sandboxes/:id/timeout', async (c) => {
    const body = await bodyOf(c, setTimeoutBody)
    return c.json(sandboxes.setTimeout(c.req.param('id'), body.timeoutMs))
  })
}
