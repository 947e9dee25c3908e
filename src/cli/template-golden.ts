/** `sandstorm template promote SNAP --name NAME`, `template rollback NAME` and the server side of `template build NAME --from T --run CMD`. */
import type { Command } from 'commander'
import { buildGoldenTemplate, promoteTemplate, rollbackTemplate, type RuntimeName, type TemplateInfo, type TemplateStartInput } from '@sandstorm/sdk'
import { connectionOf, printJson } from './cli-context.js'
import { interruptSignal } from './interrupt.js'
import { createOutputWriter, printable } from './terminal-text.js'

/** One line saying which version of a template is now current. */
function printVersion(info: TemplateInfo, what: string): void {
  process.stdout.write(`${info.name} version ${info.version} ${what}${info.snapshotId ? ` (snapshot ${info.snapshotId} over ${info.baseTemplate})` : ''}\n`)
}

/** Registers `template promote` and `template rollback` under `template`. */
export function registerGoldenTemplate(template: Command): void {
  template
    .command('promote')
    .description('make a snapshot the new current version of a template (older versions are kept for rollback)')
    .argument('<snapshot>', 'snapshot id')
    .requiredOption('--name <name>', 'template to add the version to')
    .option('--json', 'print the template as JSON')
    .action(async (snapshotId: string, flags: { name: string; json?: boolean }, cmd: Command) => {
      const info = await promoteTemplate(flags.name, snapshotId, connectionOf(cmd))
      if (flags.json) printJson(info)
      else printVersion(info, 'is current')
    })
  template
    .command('rollback')
    .description('make the version before the current one of a template current')
    .argument('<name>', 'template')
    .option('--json', 'print the template as JSON')
    .action(async (name: string, flags: { json?: boolean }, cmd: Command) => {
      const info = await rollbackTemplate(name, connectionOf(cmd))
      if (flags.json) printJson(info)
      else printVersion(info, 'is current again')
    })
}

/** Options of buildOnServer. */
export interface ServerBuildFlags {
  from: string
  run: string[]
  memory?: number
  cpus?: number
  runtime?: RuntimeName
  /** What every sandbox of the template runs at create. */
  start?: TemplateStartInput
  json?: boolean
}

/**
 * Builds a golden template on the server, streaming each step's output (stdout to stdout, the
 * rest to stderr); a failed step rejects with the server's error, which names it. Ctrl-C cancels
 * the build, which then leaves nothing. Step lines are made printable; output is raw unless it
 * goes to a terminal (see createOutputWriter).
 */
export async function buildOnServer(name: string, flags: ServerBuildFlags, cmd: Command): Promise<void> {
  const writeStdout = createOutputWriter(process.stdout)
  const writeStderr = createOutputWriter(process.stderr)
  const result = await buildGoldenTemplate(
    name,
    { from: flags.from, steps: flags.run, memoryMiB: flags.memory, cpus: flags.cpus, ...(flags.runtime ? { runtime: flags.runtime } : {}), ...(flags.start ? { start: flags.start } : {}) },
    {
      ...connectionOf(cmd),
      signal: interruptSignal(),
      onEvent(event) {
        if (event.type === 'step') process.stderr.write(`==> step ${event.index + 1}/${flags.run.length}: ${printable(event.cmd)}\n`)
        else if (event.type === 'stdout') writeStdout(Buffer.from(event.data, 'base64'))
        else if (event.type === 'stderr') writeStderr(Buffer.from(event.data, 'base64'))
      },
    },
  )
  if (flags.json) printJson(result.template)
  else printVersion(result.template, 'built')
}
