/** GET /v1/agents, DELETE /v1/agents/:id and GET /v1/logs: the fleet and its central command log. */
import { Hono } from 'hono'
import { httpStatusOf, SandstormError } from '../../shared/index.js'
import type { AgentRegistry } from './agent-registry.js'
import type { CommandLog } from './command-log.js'

/** An agent as GET /v1/agents lists it. */
export interface AgentView {
  id: string
  hostname: string
  state: 'live' | 'lost'
  labels: Record<string, string>
  runtimes: string[]
  cpus: number
  memoryMiB: number
  templates: string[]
  lastHeartbeatAt: string
  metrics: { load1: number; memoryFreeMiB: number; memoryTotalMiB: number; diskFreeMiB: number; sandboxes: number } | null
}

/** The routes, behind the same API key check as the rest of /v1. */
export function createFleetRoutes(deps: {
  /** The fleet's agents; without it (`sandstorm up`), `local` is the one agent listed. */
  registry?: AgentRegistry
  local?: () => Promise<AgentView>
  commandLog: CommandLog
  checkApiKey: (key: string) => boolean
}): Hono {
  const app = new Hono()
  app.use('*', async (c, next) => {
    const key = c.req.header('authorization')?.replace(/^Bearer\s+/i, '') ?? c.req.header('x-api-key') ?? ''
    if (!deps.checkApiKey(key)) return c.json({ code: 'unauthenticated', message: 'missing or wrong API key: expected Authorization: Bearer <key>' }, 401)
    return next()
  })
  app.get('/v1/agents', async (c) =>
    c.json({
      agents: !deps.registry ? (deps.local ? [await deps.local()] : []) : deps.registry.list().map(
        (e): AgentView => ({
          id: e.id,
          hostname: e.hostname,
          state: e.state,
          labels: e.labels,
          runtimes: e.info.runtimes,
          cpus: e.info.cpus,
          memoryMiB: e.info.memoryMiB,
          templates: e.templates,
          lastHeartbeatAt: new Date(e.lastHeartbeatMs).toISOString(),
          metrics: e.metrics,
        }),
      ),
    }),
  )
  // Revokes the agent's certificate and forgets it; `force` also forgets the sandboxes placed on it.
  app.delete('/v1/agents/:id', (c) => {
    if (!deps.registry) {
      return c.json({ code: 'failed_precondition', message: 'this server runs its one agent in process (sandstorm up): there is no fleet to remove an agent from' }, 409)
    }
    const force = c.req.query('force')
    if (force !== undefined && force !== 'true' && force !== 'false') {
      return c.json({ code: 'invalid_argument', message: `force must be true or false, got "${force}"` }, 400)
    }
    try {
      deps.registry.remove(c.req.param('id'), { force: force === 'true' })
    } catch (err) {
      const e = SandstormError.from(err)
      return c.json({ code: e.code, message: e.message }, httpStatusOf[e.code] as 404 | 409)
    }
    return c.body(null, 204)
  })
  app.get('/v1/logs', (c) => {
    const sandboxId = c.req.query('sandbox') || undefined
    const limit = Number(c.req.query('limit') ?? 1000)
    if (!Number.isInteger(limit) || limit < 1 || limit > 100_000) {
      return c.json({ code: 'invalid_argument', message: `limit must be an integer from 1 to 100000, got "${c.req.query('limit')}"` }, 400)
    }
    return c.json({ commands: deps.commandLog.list({ sandboxId, limit }) })
  })
  return app
}

/** Paths these routes answer. */
export function isFleetPath(path: string): boolean {
  return path === '/v1/agents' || path.startsWith('/v1/agents/') || path === '/v1/logs'
}
