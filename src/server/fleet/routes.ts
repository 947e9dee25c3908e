/** GET /v1/agents, DELETE /v1/agents/:id and GET /v1/logs: the fleet and its central command log. */
import type { Hono } from 'hono'
import { SandstormError, type AgentInfo } from '../../shared/index.js'
import type { ServerEnv } from '../context.js'
import type { AgentRegistry } from './agent-registry.js'
import type { CommandLog } from './command-log.js'

/** Registers the routes on the server's one app (behind its API key check, like the rest of /v1). */
export function fleetRoutes(app: Hono<ServerEnv>, deps: {
  /** The fleet's agents; without it (`sandstorm up`), `local` is the one agent listed. */
  registry?: AgentRegistry
  local?: () => Promise<AgentInfo>
  commandLog: CommandLog
  /** Replaces the fleet's join token; absent under `sandstorm up`. */
  rotateJoinToken?: () => string
}): void {
  app.get('/v1/agents', async (c) =>
    c.json({
      agents: !deps.registry ? (deps.local ? [await deps.local()] : []) : deps.registry.list().map(
        (e): AgentInfo => ({
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
      throw new SandstormError('failed_precondition', 'this server runs its one agent in process (sandstorm up): there is no fleet to remove an agent from')
    }
    const force = c.req.query('force')
    if (force !== undefined && force !== 'true' && force !== 'false') throw new SandstormError('invalid_argument', `force: expected true or false, got "${force}"`)
    deps.registry.remove(c.req.param('id'), { force: force === 'true' })
    return c.body(null, 204)
  })
  // A new join token, the old one refused from now on (after removing a host that had it).
  app.post('/v1/fleet/join-token', (c) => {
    if (!deps.rotateJoinToken) {
      throw new SandstormError('failed_precondition', 'this server runs its one agent in process (sandstorm up): it has no join token')
    }
    return c.json({ joinToken: deps.rotateJoinToken() })
  })
  app.get('/v1/logs', (c) => {
    const sandboxId = c.req.query('sandbox') || undefined
    const limit = Number(c.req.query('limit') ?? 1000)
    if (!Number.isInteger(limit) || limit < 1 || limit > 100_000) {
      throw new SandstormError('invalid_argument', `limit: expected an integer from 1 to 100000, got "${c.req.query('limit')}"`)
    }
    return c.json({ commands: deps.commandLog.list({ sandboxId, limit }) })
  })
}
