/** `sandstorm agent`: run this host's sandboxes for a server it dials (outbound only). */
import { join } from 'node:path'
import type { Command } from 'commander'
import { parseCount, parsePositiveInt } from './cli-context.js'
import { parseRuntime } from './create-options.js'
import { collect, parseKeyValues } from './key-value.js'
import { waitForStop } from './stop-signal.js'
import { defaultDataDir } from './template.js'
import { claimHost } from './claim.js'
import { readFileSync } from 'node:fs'
import { InvalidArgumentError } from '@sandstorm/sdk'
import { parseAccel, spareDisksHelp } from './up.js'
import { addHostNetworkFlags, hostNetworkOf, type HostNetworkFlags } from './network-flags.js'
import { defaultSpareDisks } from '../shared/agent-defaults.js'

interface AgentFlags extends HostNetworkFlags {
  server: string
  token?: string
  tokenFile?: string
  dataDir: string
  templatesDir?: string
  label?: string[]
  insecure?: boolean
  heartbeatMs: string
  runtime: string
  accel: string
  spareDisks: string
}

/** Registers `agent`. */
export function registerAgent(program: Command): void {
  const cmd = program
    .command('agent')
    .description('run an agent that dials the server and runs the sandboxes it schedules here')
    .requiredOption('--server <host:port>', 'where the server listens for agents')
    .option('--token <token>', 'join token printed by `sandstorm server` (needed on the first start; visible to other users in the process list: prefer --token-file or $SANDSTORM_JOIN_TOKEN)')
    .option('--token-file <path>', 'read the join token from this file (the server writes it to <data dir>/fleet/join-token)')
    .option('--data-dir <dir>', 'sandboxes, templates and this agent\'s certificate', defaultDataDir())
    .option('--templates-dir <dir>', 'where templates are (default <data-dir>/templates)')
    .option('--label <k=v>', 'a label the scheduler can match (repeatable)', collect)
    .option('--insecure', 'plain-text link (the server must run --insecure too)')
    .option('--heartbeat-ms <ms>', 'how often to send a heartbeat (the server may set its own)', '5000')
    .option('--runtime <name>', 'runtime of a create that names none: runc or qemu', 'runc')
    .option('--accel <accel>', 'qemu accelerator: kvm, tcg, or auto (probe; see `sandstorm doctor`)', 'auto')
    .option('--spare-disks <n>', spareDisksHelp, String(defaultSpareDisks))
  addHostNetworkFlags(cmd)
    .action(async (flags: AgentFlags) => {
      const network = hostNetworkOf(flags)
      const heartbeatMs = parsePositiveInt(flags.heartbeatMs, '--heartbeat-ms')
      const defaultRuntime = parseRuntime(flags.runtime)
      const accel = parseAccel(flags.accel)
      const spareDisks = parseCount(flags.spareDisks, '--spare-disks')
      const token = flags.tokenFile !== undefined ? readTokenFile(flags.tokenFile) : (flags.token ?? process.env.SANDSTORM_JOIN_TOKEN)
      // The data dir first: a second agent on it must not adopt (and so reap) this one's sandboxes.
      const claim = await claimHost(flags.dataDir, 'sandstorm agent', [])
      const [{ createLocalAgent, runAgent }, { createLogger }] = await Promise.all([import('../agent/index.js'), import('../shared/index.js')])
      const logger = createLogger()
      const templatesDir = flags.templatesDir ?? process.env.SANDSTORM_TEMPLATES_DIR ?? join(flags.dataDir, 'templates')
      const local = await createLocalAgent({ dataDir: flags.dataDir, templatesDir, logger, defaultRuntime, accel, network, spareDisks })
      const agent = await runAgent({
        local,
        serverUrl: flags.server,
        token,
        dataDir: flags.dataDir,
        templatesDir,
        labels: parseKeyValues(flags.label, '--label') ?? {},
        insecure: flags.insecure === true,
        heartbeatMs,
        logger,
      }).catch(async (err: unknown) => {
        // Refused or unreachable at the start: what the local agent made (its spare network
        // slots, its resolver) goes with it, as on a stop.
        await local.close().catch((e: unknown) => logger.warn({ err: e }, 'could not close the local agent'))
        await claim.lock.release()
        throw err
      })
      process.stdout.write(`sandstorm: agent ${agent.agentId} serving ${flags.server}\n`)
      // A revoked agent stops on its own; its sandboxes run on until a server takes them again.
      const refused = await Promise.race([waitForStop().then(() => undefined), agent.stopped])
      logger.info('stopping')
      await agent.close()
      await claim.lock.release()
      if (refused) throw refused
    })
}

/** The join token in a file, or a usage error saying what is wrong with it. */
function readTokenFile(path: string): string {
  let text: string
  try {
    text = readFileSync(path, 'utf8').trim()
  } catch (err) {
    throw new InvalidArgumentError('invalid_argument', `--token-file: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  if (!text) throw new InvalidArgumentError('invalid_argument', `--token-file: ${path} is empty: expected the token that \`sandstorm server\` printed`)
  return text
}
