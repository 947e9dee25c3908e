/** Central logs for `sandstorm up`: the in-process agent's commands are recorded as a fleet agent's are. */
import type { AgentApi } from '../../agent/index.js'
import type { AgentInfo } from '../../shared/index.js'
import type { CommandLog } from './command-log.js'

/**
 * The agent, with every command it starts recorded in the log when it ends. A proxy, not a copy:
 * every other member is the agent's own at the time of the call.
 */
export function withCommandLog(agent: AgentApi, log: CommandLog): AgentApi {
  const agentId = agent.info().id
  const exec: AgentApi['exec'] = async (id, req, options) => {
    const started = await agent.exec(id, req, options)
    void record(agent, log, agentId, id, started.pid, req.argv)
    return started
  }
  return new Proxy(agent, {
    get(target, prop) {
      if (prop === 'exec') return exec
      const value: unknown = Reflect.get(target, prop)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

async function record(agent: AgentApi, log: CommandLog, agentId: string, sandboxId: string, pid: number, argv: string[]): Promise<void> {
  let outputBytes = 0
  try {
    for await (const event of agent.follow(sandboxId, pid)) {
      if (event.type === 'stdout' || event.type === 'stderr') outputBytes += Buffer.byteLength(event.data, 'base64')
      else if (event.type === 'end') {
        log.record({ sandboxId, agentId, argv, exitCode: event.result.exitCode, durationMs: event.result.durationMs, outputBytes })
        return
      }
    }
  } catch {
    // The sandbox went away under the command, or the server closed: there is no end to record.
  }
}

/** The in-process agent as GET /v1/agents lists it: always live, no heartbeat needed. */
export async function localAgentView(agent: AgentApi): Promise<AgentInfo> {
  const info = agent.info()
  const templates = await agent.templates()
  return {
    id: info.id,
    hostname: info.hostname,
    state: 'live',
    labels: {},
    runtimes: info.runtimes,
    cpus: info.cpus,
    memoryMiB: info.memoryMiB,
    templates: templates.map((t) => t.name),
    lastHeartbeatAt: new Date().toISOString(),
    metrics: null,
  }
}
