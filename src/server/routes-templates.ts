import type { Hono } from 'hono'
import type { RouteDeps, ServerEnv } from './context.js'

/** GET /v1/templates: the templates the agent can start sandboxes from. */
export function templateRoutes(app: Hono<ServerEnv>, deps: RouteDeps): void {
  app.get('/v1/templates', async (c) => c.json(await deps.agent.templates({ signal: c.var.signal })))
}
