import type { Hono } from 'hono'
import { networkUpdateBody } from '../shared/index.js'
import type { RouteDeps, ServerEnv } from './context.js'
import { bodyOf } from './request-input.js'

/** PATCH /v1/sandboxes/:id/network: replaces a running sandbox's egress policy. */
export function networkRoutes(app: Hono<ServerEnv>, deps: RouteDeps): void {
  app.patch('/v1/sandboxes/:id/network', async (c) => {
    const body = await bodyOf(c, networkUpdateBody)
    const info = await deps.sandboxes.updateNetwork(c.req.param('id'), body, { signal: c.var.signal })
    return c.json({ ...info, ...deps.ingressOf(info) })
  })
}
