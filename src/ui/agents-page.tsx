/** Agents: each host's heartbeat, load, free memory and disk, and what it can run. */
import { useApi } from './api-context.js'
import { Ago, ErrorLine, formatBytes } from './bits.js'
import { usePoll } from './use-poll.js'

/** The agents page. */
export function AgentsPage() {
  const api = useApi()
  const agents = usePoll(() => api.listAgents(), 2000)
  const mib = (n: number): string => formatBytes(n * 2 ** 20)
  return (
    <section>
      <h1>Agents</h1>
      <ErrorLine error={agents.error} />
      <table class="grid" id="agent-list">
        <thead>
          <tr>
            <th>Agent</th>
            <th>State</th>
            <th>Heartbeat</th>
            <th>Load (1 min)</th>
            <th>Sandboxes</th>
            <th>Memory free</th>
            <th>Disk free</th>
            <th>Capacity</th>
            <th>Runtimes</th>
          </tr>
        </thead>
        <tbody>
          {agents.value?.map((a) => (
            <tr data-agent={a.id}>
              <td>
                <strong>{a.hostname}</strong>
                <div class="muted small mono">{a.id}</div>
              </td>
              <td>
                <span class={`badge state-${a.state === 'live' ? 'running' : 'lost'}`}>{a.state}</span>
              </td>
              <td>
                <Ago iso={a.lastHeartbeatAt} />
              </td>
              <td class="num" data-field="load">{a.metrics ? a.metrics.load1.toFixed(2) : '–'}</td>
              <td class="num" data-field="sandboxes">{a.metrics?.sandboxes ?? '–'}</td>
              <td>{a.metrics ? `${mib(a.metrics.memoryFreeMiB)} of ${mib(a.metrics.memoryTotalMiB)}` : '–'}</td>
              <td>{a.metrics ? mib(a.metrics.diskFreeMiB) : '–'}</td>
              <td data-field="capacity">
                {a.cpus} CPU · {mib(a.memoryMiB)}
              </td>
              <td>{a.runtimes.join(', ')}</td>
            </tr>
          ))}
          {agents.value?.length === 0 && (
            <tr>
              <td colSpan={9} class="muted">
                No agents.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </section>
  )
}
