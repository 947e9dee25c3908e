import type { Hono } from 'hono'
import { z } from 'zod'
import { createSandboxBody, setTimeoutBody } from '../shared/index.js'
import type { RouteDeps, ServerEnv } from './context.js'
import { bodyOf } from './request-input.js'
import { parseInput } from './validation.js'

const listQuery = z.strictObject({
  label: z.array(z.string().regex(/^[^=]+=/, 'a label filter "key=value"')).optional(),
  state: z.enum(['starting', 'running', 'paused', 'stopped', 'lost']).optional(),
})

/** Create, list, get, extend and delete sandboxes. */
export function sandboxRoutes(app: Hono<ServerEnv>, deps: RouteDeps): void {
  const { sandboxes } = deps

  app.post('/v1/sandboxes', async (c) => {
    const body = await bodyOf(c, createSandboxBody)
    const info = await sandboxes.create(body, { signal: c.var.signal })
    return c.json({ ...info, ...deps.ingressOf(info) }, 201)
  })

  app.get('/v1/sandboxes', (c) => {
    // `label` may repeat; every other key counts once, so its last value is what is checked.
    const raw = Object.fromEntries(Object.entries(c.req.queries()).map(([k, v]) => [k, k === 'label' ? v : v.at(-1)]))
    const query = parseInput(listQuery, raw)
    const labels = Object.fromEntries((query.label ?? []).map((pair) => {
      const at = pair.indexOf('=')
      return [pair.slice(0, at), pair.slice(at + 1)]
    }))
    return c.json(sandboxes.list({ state: query.state, labels }))
  })

  app.get('/v1/sandboxes/:id', (c) => {
    const info = sandboxes.get(c.req.param('id'))
    return c.json({ ...info, ...deps.ingressOf(info) })
  })

  app.get('/v1/sandboxes/:id/metrics', async (c) => c.json(await sandboxes.usage(c.req.param('id'), { signal: c.var.signal })))

  app.delete('/v1/sandboxes/:id', async (c) => {
    await sandboxes.destroy(c.req.param('id'), { signal: c.var.signal })
    return c.body(null, 204)
  })

  app.post('/v1/sandboxes/:id/timeout', async (c) => {
    const body = await bodyOf(c, setTimeoutBody)
    return c.json(sandboxes.setTimeout(c.req.param('id'), body.timeoutMs))
  })
}
