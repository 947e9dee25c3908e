import type { Hono } from 'hono'
import { forkBody, restoreBody, takeSnapshotBody } from '../shared/index.js'
import type { RouteDeps, ServerEnv } from './context.js'
import { bodyOf } from './request-input.js'
import type { SnapshotService } from './snapshot-service.js'

/** Take, list, delete snapshots; fork from one; restore a sandbox to one. */
export function snapshotRoutes(app: Hono<ServerEnv>, deps: RouteDeps & { snapshots: SnapshotService }): void {
  const { snapshots } = deps

  app.post('/v1/sandboxes/:id/snapshots', async (c) => {
    const body = await bodyOf(c, takeSnapshotBody)
    return c.json(await snapshots.take(c.req.param('id'), body.label, { signal: c.var.signal }), 201)
  })

  app.post('/v1/sandboxes/:id/restore', async (c) => {
    const body = await bodyOf(c, restoreBody)
    return c.json(await snapshots.restore(c.req.param('id'), body.snapshotId, { signal: c.var.signal }))
  })

  app.get('/v1/snapshots', (c) => c.json(snapshots.list()))
  app.get('/v1/snapshots/:id', (c) => c.json(snapshots.get(c.req.param('id'))))

  app.delete('/v1/snapshots/:id', async (c) => {
    await snapshots.remove(c.req.param('id'), { signal: c.var.signal })
    return c.body(null, 204)
  })

  app.post('/v1/snapshots/:id/fork', async (c) => {
    const body = await bodyOf(c, forkBody)
    return c.json(await snapshots.fork(c.req.param('id'), body, { signal: c.var.signal }), 201)
  })
}
