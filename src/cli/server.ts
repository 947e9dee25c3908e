/** `sandstorm server`: the control plane alone; agents on any host dial in with `sandstorm agent`. */
import type { Command } from 'commander'
import { InvalidArgumentError } from '@sandstorm/sdk'
import { parsePositiveInt } from './cli-context.js'
import { waitForStop } from './stop-signal.js'
import { defaultDataDir } from './template.js'
import { claimHost } from './claim.js'
import { parseDiskMiB } from './disk-size.js'
import { parseDuration } from './duration.js'
import { addServerNetworkFlags, serverNetworkOf, type ServerNetworkFlags } from './network-flags.js'
import { addMetricsFlags, metricsOptionsOf, type MetricsFlags } from './metrics-flags.js'

interface ServerFlags extends ServerNetworkFlags, MetricsFlags {
  dataDir: string
  defaultDisk: string
  host: string
  port: string
  agentHost?: string
  agentPort: string
  insecure?: boolean
  heartbeatMs?: string
  lostAfterMs: string
  buildTimeout: string
}

/** Registers `server`. */
export function registerServer(program: Command): void {
  const cmd = program
    .command('server')
    .description('run the server without a local agent; agents join with `sandstorm agent --server HOST:PORT --token T`')
    .option('--data-dir <dir>', 'state, API key, CA and join token', defaultDataDir())
    .option('--host <host>', 'address of the HTTP API', '127.0.0.1')
    .option('--port <port>', 'port of the HTTP API (0 picks a free one)', '7420')
    .option('--agent-host <host>', 'address agents dial (default: --host)')
    .option('--agent-port <port>', 'port agents dial (0 picks a free one)', '7421')
    .option('--insecure', 'plain-text link to agents (token on every call); only on a network you trust')
    .option('--heartbeat-ms <ms>', 'heartbeat interval the agents are told to keep (default: each agent\'s own --heartbeat-ms, 5000)')
    .option('--lost-after-ms <ms>', 'an agent silent this long is marked lost, and its sandboxes with it', '15000')
    .option('--default-disk <size>', "disk quota of a create that names none and whose template has none (MiB, or 512M, 10G)", '2G')
    .option('--build-timeout <duration>', 'a template build from steps running longer fails, leaving no build sandbox and no template (30m, 2h)', '1h')
  addMetricsFlags(addServerNetworkFlags(cmd))
    .action(async (flags: ServerFlags) => {
      const serverNetwork = serverNetworkOf(flags)
      const defaultDiskMiB = parseDiskMiB(flags.defaultDisk, '--default-disk')
      const metricsOptions = metricsOptionsOf(flags)
      const port = flags.port === '0' ? 0 : parsePositiveInt(flags.port, '--port')
      const agentPort = flags.agentPort === '0' ? 0 : parsePositiveInt(flags.agentPort, '--agent-port')
      const heartbeatMs = flags.heartbeatMs === undefined ? undefined : parsePositiveInt(flags.heartbeatMs, '--heartbeat-ms')
      const lostAfterMs = parsePositiveInt(flags.lostAfterMs, '--lost-after-ms')
      const buildTimeoutMs = parseDuration(flags.buildTimeout, '--build-timeout')
      if (heartbeatMs !== undefined && heartbeatMs >= lostAfterMs) {
        throw new InvalidArgumentError('invalid_argument', `--heartbeat-ms (${heartbeatMs}) must be less than --lost-after-ms (${lostAfterMs}): agents would be lost between heartbeats`)
      }
      const claim = await claimHost(flags.dataDir, 'sandstorm server', [
        { host: flags.host, port, flag: '--port' },
        { host: flags.agentHost ?? flags.host, port: agentPort, flag: '--agent-port' },
      ])
      const [{ startServer }, { createLogger }] = await Promise.all([import('../server/index.js'), import('../shared/index.js')])
      const logger = createLogger()
      await claim.releasePorts()
      const server = await startServer({
        dataDir: flags.dataDir,
        host: flags.host,
        port,
        logger,
        defaultDiskMiB,
        buildTimeoutMs,
        ...serverNetwork,
        ...metricsOptions,
        fleet: { host: flags.agentHost ?? flags.host, port: agentPort, insecure: flags.insecure === true, heartbeatMs, lostAfterMs },
      })
      const agentAddress = `${flags.agentHost ?? flags.host}:${server.fleet!.port}`
      process.stdout.write(
        `sandstorm: listening on ${server.url} (API key in ${server.apiKeyPath})\n` +
          `sandstorm: agents dial ${agentAddress}${flags.insecure ? ' (insecure)' : ''}; join a host with:\n` +
          `  sandstorm agent --server ${agentAddress} --token ${server.fleet!.joinToken}${flags.insecure ? ' --insecure' : ''}\n`,
      )
      await waitForStop()
      logger.info('stopping')
      await server.close()
      await claim.lock.release()
    })
}
