/** `sandstorm network ID`: replace a running sandbox's egress policy (flags left out are cleared). */
import type { Command } from 'commander'
import { Sandbox } from '@sandstorm/sdk'
import { connectionOf, printJson } from './cli-context.js'
import { addEgressFlags, egressOf, type SandboxNetworkFlags } from './network-flags.js'

/** Registers `network`. */
export function registerNetwork(program: Command): void {
  addEgressFlags(
    program
      .command('network')
      .description("replace a running sandbox's egress policy, whole (no flags: the public internet again); prints it")
      .argument('<id>', 'sandbox id'),
  )
    .option('--json', 'print the sandbox as JSON')
    .action(async (id: string, flags: SandboxNetworkFlags & { json?: boolean }, cmd: Command) => {
      const policy = egressOf(flags) ?? { allowOut: [], denyOut: [] }
      const sbx = await Sandbox.connect(id, connectionOf(cmd))
      const info = await sbx.updateNetwork(policy)
      if (flags.json) return printJson(info)
      const net = info.network
      if (net === 'none') return void process.stdout.write('none\n')
      process.stdout.write(`allow-out: ${net.allowOut.join(' ') || '-'}\ndeny-out: ${net.denyOut.join(' ') || '-'}\n`)
    })
}
