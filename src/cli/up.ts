/** `sandstorm up`: the server and a local agent in one process, the default for one machine. */
import { join } from 'node:path'
import type { Command } from 'commander'
import { InvalidArgumentError } from '@sandstorm/sdk'
import { parseCount, parsePositiveInt } from './cli-context.js'
import { parseRuntime } from './create-options.js'
import { defaultDataDir } from './template.js'
import { claimHost } from './claim.js'
import { parseDiskMiB } from './disk-size.js'
import { parseDuration } from './duration.js'
import { addHostNetworkFlags, addServerNetworkFlags, hostNetworkOf, serverNetworkOf, type HostNetworkFlags, type ServerNetworkFlags } from './network-flags.js'
import { addMetricsFlags, metricsOptionsOf, type MetricsFlags } from './metrics-flags.js'
import { addPoolFlags, poolsOf, type PoolFlags } from './pool-flags.js'
import { defaultSpareDisks } from '../shared/agent-defaults.js'

interface UpFlags extends HostNetworkFlags, ServerNetworkFlags, MetricsFlags, PoolFlags {
  dataDir: string
  host: string
  port: string
  templatesDir?: string
  runtime?: string
  accel: string
  defaultDisk: string
  hibernateAfter: string
  buildTimeout: string
  insecureRegistry: string[]
  maxLayerSize?: string
  spareDisks: string
}

/** A `--accel` value. */
export function parseAccel(value: string): 'kvm' | 'tcg' | 'auto' {
  if (value === 'kvm' || value === 'tcg' || value === 'auto') return value
  throw new InvalidArgumentError('invalid_argument', `--accel: expected one of kvm, tcg, auto, got "${value}"`)
}

/** The help of `--spare-disks`, on `up` and `agent`. */
export const spareDisksHelp = 'sandbox disks (quota images) kept formatted and mounted ahead, so that a create moves one in; 0 makes each on the spot'

/** Registers `up`. */
export function registerUp(program: Command): void {
  const cmd = program
    .command('up')
    .description('run the server and a local agent in this process (Ctrl-C stops both; sandboxes keep running)')
    .option('--data-dir <dir>', 'state, API key and templates', defaultDataDir())
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0 picks a free one)', '7420')
    .option('--templates-dir <dir>', 'where templates are (default <data-dir>/templates)')
    .option('--runtime <name>', 'runtime of a create that names none: runc or qemu', 'runc')
    .option('--accel <accel>', 'qemu accelerator: kvm, tcg, or auto (probe; see `sandstorm doctor`)', 'auto')
    .option('--default-disk <size>', "disk quota of a create that names none and whose template has none (MiB, or 512M, 10G)", '2G')
    .option('--insecure-registry <host:port>', 'pull images from this registry over plain HTTP, even on this host (repeat for more; any other registry on loopback is refused)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--build-timeout <duration>', 'a template build (from an image, a Dockerfile or steps) running longer fails, leaving no build sandbox and no template (30m, 2h)', '1h')
    .option('--max-layer-size <size>', 'the most one image layer may unpack to (MiB, or 512M, 10G); a layer past it fails its build', '16G')
    .option('--spare-disks <n>', spareDisksHelp, String(defaultSpareDisks))
    .option('--hibernate-after <duration>', 'a paused qemu sandbox is written to disk (its RAM freed) after this long paused, or never', '10m')
  addPoolFlags(addMetricsFlags(addServerNetworkFlags(addHostNetworkFlags(cmd))))
    .action(async (flags: UpFlags) => {
      const port = flags.port === '0' ? 0 : parsePositiveInt(flags.port, '--port')
      const defaultRuntime = parseRuntime(flags.runtime ?? 'runc')
      const accel = parseAccel(flags.accel)
      const network = hostNetworkOf(flags)
      const serverNetwork = serverNetworkOf(flags)
      const defaultDiskMiB = parseDiskMiB(flags.defaultDisk, '--default-disk')
      const metricsOptions = metricsOptionsOf(flags)
      const hibernateAfterMs = flags.hibernateAfter === 'never' ? undefined : parseDuration(flags.hibernateAfter, '--hibernate-after')
      const buildTimeoutMs = parseDuration(flags.buildTimeout, '--build-timeout')
      const pools = poolsOf(flags)
      const spareDisks = parseCount(flags.spareDisks, '--spare-disks')
      // A pooled microVM holds its guest's memory while it waits: qemu keeps only the pools asked for.
      const defaultPools = pools.source === 'defaults' && defaultRuntime === 'qemu' ? [] : pools.pools
      // Loaded here so that client commands do not load the server, the agent and SQLite.
      const [{ createLocalAgent }, { startServer }, { createLogger }] = await Promise.all([
        import('../agent/index.js'),
        import('../server/index.js'),
        import('../shared/index.js'),
      ])
      // The data dir and the port first: a second `up` must not adopt (and so reap) this one's sandboxes.
      const claim = await claimHost(flags.dataDir, 'sandstorm up', [{ host: flags.host, port, flag: '--port' }])
      const logger = createLogger()
      if (defaultPools !== pools.pools) logger.info({ runtime: defaultRuntime }, 'no default pools with --runtime qemu (a pooled microVM holds its memory): give --pool TEMPLATE=N to keep some')
      const templatesDir = flags.templatesDir ?? process.env.SANDSTORM_TEMPLATES_DIR ?? join(flags.dataDir, 'templates')
      // The agent holds the default: a server in front of many agents has none of its own yet.
      const agent = await createLocalAgent({ dataDir: flags.dataDir, templatesDir, logger, defaultRuntime, accel, network, insecureRegistries: flags.insecureRegistry, spareDisks, maxLayerBytes: parseDiskMiB(flags.maxLayerSize ?? '16G', '--max-layer-size') * 1024 * 1024 })
      let server: Awaited<ReturnType<typeof startServer>>
      try {
        await claim.releasePorts()
        server = await startServer({ dataDir: flags.dataDir, host: flags.host, port, agent, logger, defaultDiskMiB, hibernateAfterMs, buildTimeoutMs, defaultPools, ...serverNetwork, ...metricsOptions })
      } catch (err) {
        await agent.close()
        throw err
      }
      process.stdout.write(`sandstorm: listening on ${server.url} (API key in ${server.apiKeyPath})\n`)
      await new Promise<void>((resolve) => {
        let stopping = false
        const stop = (): void => {
          // A second signal while closing exits at once.
          if (stopping) process.exit(130)
          stopping = true
          resolve()
        }
        process.on('SIGINT', stop)
        process.on('SIGTERM', stop)
      })
      logger.info('stopping')
      await server.close()
      await agent.close()
      await claim.lock.release()
    })
}
