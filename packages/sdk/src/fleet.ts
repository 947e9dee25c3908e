/** The fleet as a `sandstorm server` reports it: its agents and the central command log. */
import { resolveConnection, type ConnectionOptions } from './connection.js'
import { createApiClient } from './http-client.js'
import type { AgentInfo, CommandLogEntry } from './wire/index.js'

/** The agents a fleet server knows, live and lost. */
export async function listAgents(options: ConnectionOptions = {}): Promise<AgentInfo[]> {
  const body = await createApiClient(resolveConnection(options)).json<{ agents: AgentInfo[] }>({ method: 'GET', path: '/v1/agents', signal: options.signal })
  return body.agents
}

/** Removes an agent from the fleet: its certificate is revoked; `force` also forgets the sandboxes placed on it. */
export function removeAgent(agentId: string, options: ConnectionOptions & { force?: boolean } = {}): Promise<void> {
  const query = options.force ? '?force=true' : ''
  return createApiClient(resolveConnection(options)).send({ method: 'DELETE', path: `/v1/agents/${encodeURIComponent(agentId)}${query}`, signal: options.signal })
}

/** Replaces the fleet's join token and returns the new one: the old one admits no host from then on (agents that joined keep their certificates). */
export async function rotateJoinToken(options: ConnectionOptions = {}): Promise<string> {
  const body = await createApiClient(resolveConnection(options)).json<{ joinToken: string }>({ method: 'POST', path: '/v1/fleet/join-token', signal: options.signal })
  return body.joinToken
}

/** Commands the fleet ran, oldest first, optionally of one sandbox. */
export async function listCommandLogs(options: ConnectionOptions & { sandboxId?: string; limit?: number } = {}): Promise<CommandLogEntry[]> {
  const query = new URLSearchParams()
  if (options.sandboxId) query.set('sandbox', options.sandboxId)
  if (options.limit) query.set('limit', String(options.limit))
  const qs = query.size > 0 ? `?${query}` : ''
  const body = await createApiClient(resolveConnection(options)).json<{ commands: CommandLogEntry[] }>({ method: 'GET', path: `/v1/logs${qs}`, signal: options.signal })
  return body.commands
}
