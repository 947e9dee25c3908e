import type { Hono } from 'hono'
import type { RouteDeps, ServerEnv } from './context.js'

/** GET /healthz (no key) and GET /metrics (Prometheus text, key needed like every other route). */
export function healthRoutes(app: Hono<ServerEnv>, deps: RouteDeps): void {
  app.get('/healthz', (c) => c.json({ ok: true }))
  app.get('/metrics', async (c) => {
    const text = await deps.metrics.registry.metrics()
    return c.body(text, 200, { 'content-type': deps.metrics.registry.contentType })
  })
}
