/** `sandstorm port-forward ID PORT`: a local listener whose connections reach a port of the sandbox. */
import type { Command } from 'commander'
import { forwardPort, InvalidArgumentError, Sandbox } from '@sandstorm/sdk/node'
import { checkPort, SandstormError } from '../shared/index.js'
import { connectionOf } from './cli-context.js'
import { waitForStop } from './stop-signal.js'
import { errorText } from './terminal-text.js'

/** Registers `port-forward`. */
export function registerPortForward(program: Command): void {
  program
    .command('port-forward')
    .description('listen on a local port and tunnel each connection to PORT of the sandbox, through the server (Ctrl-C stops)')
    .argument('<id>', 'sandbox id')
    .argument('<port>', 'port in the sandbox')
    .option('--local <port>', 'local port to listen on (default: the same as PORT; 0 picks a free one)')
    .option('--address <host>', 'local address to listen on', '127.0.0.1')
    .action(async (id: string, portText: string, flags: { local?: string; address: string }, cmd: Command) => {
      const port = usage(() => checkPort(portText, 'PORT'))
      const localPort = flags.local === '0' ? 0 : usage(() => checkPort(flags.local ?? portText, '--local'))
      const sbx = await Sandbox.connect(id, connectionOf(cmd))
      const forward = await forwardPort(sbx, port, {
        localPort,
        host: flags.address,
        onError: (err: Error) => process.stderr.write(`sandstorm: ${errorText(err)}\n`),
      })
      process.stdout.write(`sandstorm: forwarding ${forward.host}:${forward.localPort} -> ${id}:${port}\n`)
      await waitForStop()
      await forward.close()
    })
}

/** A shared check's error as a usage error (exit 2). */
function usage<T>(check: () => T): T {
  try {
    return check()
  } catch (err) {
    if (err instanceof SandstormError) throw new InvalidArgumentError('invalid_argument', err.message)
    throw err
  }
}
