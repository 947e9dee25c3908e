import type { Hono } from 'hono'
import { z } from 'zod'
import { poolBody, poolWaitBody, SandstormError, templateNameSchema } from '../../shared/index.js'
import type { ServerEnv } from '../context.js'
import { bodyOf } from '../request-input.js'
import { parseInput } from '../validation.js'
import type { WarmPools } from './pool-manager.js'

const templateParam = z.strictObject({ template: templateNameSchema })

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
    const body = await bodyOf(c, poolWaitBody)
    const min = pools.list().find((p) => p.template === template)?.min ?? 1
    return c.json(await pools.waitReady(template, body.ready ?? min, { signal: c.var.signal, timeoutMs: body.timeoutMs }))
  })
}
