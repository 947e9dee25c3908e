/** `sandstorm agents`, `sandstorm agents rm` and `sandstorm logs`: the fleet and its central command log. */
import type { Command } from 'commander'
import { listAgents, listCommandLogs, removeAgent, rotateJoinToken } from '@sandstorm/sdk'
import { connectionOf, printJson, printTable } from './cli-context.js'
import { formatDuration } from './duration.js'

/** Registers `agents` and `logs`. */
export function registerAgents(program: Command): void {
  const agents = program
    .command('agents')
    .description('list the agents of the fleet with their last heartbeat and host metrics')
    .option('--json', 'print JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => {
      const list = await listAgents(connectionOf(cmd))
      if (flags.json) return printJson(list)
      const now = Date.now()
      printTable(
        ['ID', 'HOST', 'STATE', 'HEARTBEAT', 'SANDBOXES', 'LOAD', 'MEM FREE', 'DISK FREE', 'LABELS'],
        list.map((a) => [
          a.id,
          a.hostname,
          a.state,
          `${formatDuration(Math.max(0, now - Date.parse(a.lastHeartbeatAt)))} ago`,
          String(a.metrics?.sandboxes ?? '-'),
          a.metrics ? a.metrics.load1.toFixed(2) : '-',
          a.metrics ? `${a.metrics.memoryFreeMiB}MiB` : '-',
          a.metrics ? `${a.metrics.diskFreeMiB}MiB` : '-',
          Object.entries(a.labels).map(([k, v]) => `${k}=${v}`).join(','),
        ]),
      )
    })
  agents
    .command('rm <id>')
    .description("remove an agent from the fleet: its certificate is revoked (the server refuses it from then on; only a join token lets the host in again)")
    .option('--force', 'also when sandboxes are placed on it: the catalog forgets them (the host destroys them if it ever joins again)')
    .action(async (id: string, flags: { force?: boolean }, cmd: Command) => {
      await removeAgent(id, { ...connectionOf(cmd), force: flags.force === true })
      process.stdout.write(`sandstorm: agent ${id} removed; its certificate is revoked\n`)
    })
  agents
    .command('rotate-token')
    .description('replace the join token (after removing a host that had it): the old one admits no host from then on; agents that joined keep their certificates')
    .action(async (_flags: unknown, cmd: Command) => {
      process.stdout.write(`${await rotateJoinToken(connectionOf(cmd))}\n`)
    })
  program
    .command('logs')
    .description('list the commands run in sandboxes (central log of a `sandstorm server`)')
    .option('--sandbox <id>', 'only this sandbox')
    .option('--json', 'print JSON')
    .action(async (flags: { sandbox?: string; json?: boolean }, cmd: Command) => {
      const commands = await listCommandLogs({ ...connectionOf(cmd), sandboxId: flags.sandbox })
      if (flags.json) return printJson(commands)
      printTable(
        ['ENDED', 'SANDBOX', 'EXIT', 'DURATION', 'OUTPUT', 'COMMAND'],
        commands.map((c) => [c.endedAt, c.sandboxId, String(c.exitCode), `${c.durationMs}ms`, `${c.outputBytes}B`, c.argv.join(' ')]),
      )
    })
}
