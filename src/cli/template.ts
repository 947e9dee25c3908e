/** `sandstorm template ls` (through the API) and `sandstorm template build` (local, no server). */
import { join } from 'node:path'
import type { Command } from 'commander'
import { InvalidArgumentError, listTemplates, type RuntimeName, type TemplateInfo } from '@sandstorm/sdk'
import { parseRuntime } from './create-options.js'
import { connectionOf, parsePositiveInt, parsePositiveNumber, printJson, printTable } from './cli-context.js'
import { buildOnServer, registerGoldenTemplate } from './template-golden.js'
import { formatDuration } from './duration.js'
import { formatBytes } from '../shared/format-bytes.js'
import { startFromFlags, type StartFlags } from './start-flags.js'
import { buildImageOnServer, isImageBuild, registerTemplateRemove, sourceText, type ImageBuildFlags } from './template-image.js'

/** Where `up` and `template build` keep their data unless told otherwise. */
export function defaultDataDir(): string {
  return process.env.SANDSTORM_DATA_DIR || '/var/lib/sandstorm'
}

/** Rows of the `template ls` table. */
export function templateRows(list: TemplateInfo[]): string[][] {
  return list.map((t) => [t.name, String(t.version), formatBytes(t.sizeBytes), t.sharedBytes ? formatBytes(t.sharedBytes) : '-', sourceText(t) || '-', t.source?.digest ? t.source.digest.slice(0, 19) : '-', formatDuration(t.buildMs), t.builtAt])
}

/** Registers `template ls` and `template build`. */
export function registerTemplate(program: Command): void {
  const template = program.command('template').description('list and build templates')
  template
    .command('ls')
    .description('list the templates the server can start sandboxes from')
    .option('--json', 'print JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => {
      const list = await listTemplates(connectionOf(cmd))
      if (flags.json) return printJson(list)
      printTable(['NAME', 'VERSION', 'SIZE', 'SHARED', 'SOURCE', 'DIGEST', 'BUILD TIME', 'BUILT AT'], templateRows(list))
    })
  registerGoldenTemplate(template)
  registerTemplateRemove(template)
  template
    .command('build')
    .description('build a template: from an image (--image, --image-archive) or a Dockerfile (--dockerfile, --context) on the server; with --from, a golden template from --run steps; else debian, host, base or code-interpreter-v1 on this machine (no server needed). Step output goes to a pipe or file as it is; on a terminal its control characters are shown escaped (\\x1b)')
    .argument('<name>', 'template to build')
    .option('--data-dir <dir>', 'data directory; templates go to <dir>/templates', defaultDataDir())
    .option('--force', 'build a new version even if one exists')
    .option('--from <template>', 'build on the server: start a temporary sandbox of this template')
    .option('--run <cmd>', 'with --from: a step, run as root with /bin/sh -c (repeat for more)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--memory <MiB>', 'with --from: memory of the build sandbox, recorded in the template', (v) => parsePositiveInt(v, '--memory'))
    .option('--cpus <n>', 'with --from: cpus of the build sandbox, recorded in the template', (v) => parsePositiveNumber(v, '--cpus'))
    .option('--runtime <name>', 'with --from: runc, or qemu to build in a VM and keep its memory (clones start with its processes running)', (v) => parseRuntime(v))
    .option('--start <cmd>', 'with --from: a command every sandbox of the template runs at create (a create returns once it is ready)')
    .option('--start-user <user>', 'with --start: the user it runs as (default root)')
    .option('--ready-http <port[/path]>', 'with --start: ready once a GET of this port and path in the sandbox answers 2xx')
    .option('--ready-cmd <cmd>', 'with --start: ready once this command exits 0')
    .option('--ready-timeout <duration>', 'with --start: how long a create waits for it (default 60s)')
    .option('--image <ref>', 'build on the server from an image in a registry: name[:tag][@sha256:digest]')
    .option('--registry-auth <user:password>', 'with --image: credentials for its registry (default $SANDSTORM_REGISTRY_AUTH, else the server\'s Docker config.json); argv is visible to other local users (ps): prefer $SANDSTORM_REGISTRY_AUTH or --registry-auth-stdin')
    .option('--registry-auth-stdin', 'with --image: read user:password for its registry from stdin (one line)')
    .option('--image-archive <tar>', 'build on the server from a `docker save` or OCI image layout tar')
    .option('--dockerfile <path>', 'build on the server from this Dockerfile (a path inside --context; default Dockerfile)')
    .option('--context <dir>', 'the Dockerfile build\'s context directory (default .)')
    .option('--build-arg <KEY=value>', 'with --dockerfile: a build arg (repeat for more)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--no-cache', 'with --dockerfile: run every step again')
    .option('--json', 'print the built template as JSON')
    .action(async (name: string, flags: { dataDir: string; force?: boolean; json?: boolean; from?: string; run: string[]; memory?: number; cpus?: number; runtime?: RuntimeName; cache?: boolean } & StartFlags & Omit<ImageBuildFlags, 'start' | 'noCache'>, cmd: Command) => {
      const start = startFromFlags(flags)
      const { start: _startCmd, ...rest } = flags
      if (isImageBuild(flags)) return buildImageOnServer(name, { ...rest, ...(flags.cache === false ? { noCache: true } : {}), ...(start ? { start } : {}) }, cmd)
      if (flags.from !== undefined) return buildOnServer(name, { ...rest, from: flags.from, ...(start ? { start } : {}) }, cmd)
      if (start !== undefined) throw new InvalidArgumentError('invalid_argument', '--start needs --from: expected the template to build on in a sandbox')
      if (flags.runtime !== undefined) throw new InvalidArgumentError('invalid_argument', '--runtime needs --from: expected the template to build on in a sandbox')
      if (flags.run.length > 0) throw new InvalidArgumentError('invalid_argument', '--run needs --from: expected the template to run the steps on')
      // Loaded here so that the other commands do not pay for the build code.
      const { buildTemplate } = await import('./template-build.js')
      const info = await buildTemplate(name, { dir: join(flags.dataDir, 'templates'), force: flags.force ?? false })
      if (flags.json) printJson(info)
      else process.stdout.write(`${info.name} version ${info.version} (${formatBytes(info.sizeBytes)}, built in ${formatDuration(info.buildMs)})\n`)
    })
}
