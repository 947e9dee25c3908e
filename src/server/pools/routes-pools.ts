import type { Hono } from 'hono'
import { z } from 'zod'
import { SandstormError } from '../../shared/index.js'
import type { ServerEnv } from '../context.js'
import { bodyOf } from '../request-input.js'
import { parseInput } from '../validation.js'
import type { WarmPools } from './pool-manager.js'

/** Most sandboxes one pool may hold: a pool is a cache, not a fleet. */
export const maxPoolSize = 256

const templateParam = z.strictObject({ template: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'a template name such as "debian"') })
const poolBody = z.strictObject({
  min: z.number().int().min(0).max(maxPoolSize),
  max: z.number().int().min(1).max(maxPoolSize),
})
const waitBody = z.strictObject({
  /** Ready sandboxes to wait for. @default the pool's min */
  ready: z.number().int().min(1).max(maxPoolSize).optional(),
  timeoutMs: z.number().int().positive().max(10 * 60_000).default(60_000),
})

/** PUT, GET and DELETE /v1/pools[/:template], and POST /v1/pools/:template/wait. */
export function poolRoutes(app: Hono<ServerEnv>, pools: WarmPools): void {
  const templateOf = (param: string | undefined): string => parseInput(templateParam, { template: param }).template

  app.get('/v1/pools', (c) => c.json(pools.list()))

  app.get('/v1/pools/:template', (c) => {
    const template = templateOf(c.req.param('template'))
    const pool = pools.list().find((p) => p.template === template)
    if (!pool) throw new SandstormError('not_found', `no pool for template "${template}"`)
    return c.json(pool)
  })

  app.put('/v1/pools/:template', async (c) => {
    const template = templateOf(c.req.param('template'))
    const body = await bodyOf(c, poolBody)
    return c.json(await pools.set(template, body, { signal: c.var.signal }))
  })

  app.delete('/v1/pools/:template', async (c) => {
    await pools.remove(templateOf(c.req.param('template')))
    return c.body(null, 204)
  })

  app.post('/v1/pools/:template/wait', async (c) => {
    const template = templateOf(c.req.param('template'))
    const body = await bodyOf(c, waitBody)
    const min = pools.list().find((p) => p.template === template)?.min ?? 1
    return c.json(await pools.waitReady(template, body.ready ?? min, { signal: c.var.signal, timeoutMs: body.timeoutMs }))
  })
}
