/** `sandstorm template build NAME --image REF | --image-archive TAR | --dockerfile F --context DIR`, and `template rm NAME`. */
import type { Command } from 'commander'
import { buildTemplate, deleteTemplate, InvalidArgumentError, pruneTemplateLayers, type RegistryAuth, type TemplateInfo, type TemplateStartInput } from '@sandstorm/sdk/node'
import { connectionOf, printJson } from './cli-context.js'
import { interruptSignal } from './interrupt.js'
import { formatDuration } from './duration.js'
import { readSecretStdin } from './secret-input.js'
import { createOutputWriter, printable } from './terminal-text.js'

/** Flags of an image build. */
export interface ImageBuildFlags {
  image?: string
  imageArchive?: string
  dockerfile?: string
  context?: string
  registryAuth?: string
  registryAuthStdin?: boolean
  buildArg: string[]
  noCache?: boolean
  memory?: number
  cpus?: number
  start?: TemplateStartInput
  json?: boolean
}

/** Is this an image build (one of --image, --image-archive, --dockerfile/--context)? */
export function isImageBuild(flags: Pick<ImageBuildFlags, 'image' | 'imageArchive' | 'dockerfile' | 'context'>): boolean {
  return flags.image !== undefined || flags.imageArchive !== undefined || flags.dockerfile !== undefined || flags.context !== undefined
}

/** `user:password` of --registry-auth (or of `where` else). */
function parseRegistryAuth(text: string, where = '--registry-auth'): RegistryAuth {
  const colon = text.indexOf(':')
  if (colon <= 0) throw new InvalidArgumentError('invalid_argument', `${where}: expected user:password, got no colon after a user name`)
  return { username: text.slice(0, colon), password: text.slice(colon + 1) }
}

/** Credentials from --registry-auth, --registry-auth-stdin or $SANDSTORM_REGISTRY_AUTH, in that order; none when none is given. */
async function registryAuthOf(flags: Pick<ImageBuildFlags, 'registryAuth' | 'registryAuthStdin'>): Promise<RegistryAuth | undefined> {
  if (flags.registryAuth !== undefined && flags.registryAuthStdin) throw new InvalidArgumentError('invalid_argument', '--registry-auth and --registry-auth-stdin: expected one of them, got both')
  if (flags.registryAuth) return parseRegistryAuth(flags.registryAuth)
  if (flags.registryAuthStdin) return parseRegistryAuth(await readSecretStdin('--registry-auth-stdin'), '--registry-auth-stdin')
  const env = process.env.SANDSTORM_REGISTRY_AUTH
  return env ? parseRegistryAuth(env, '$SANDSTORM_REGISTRY_AUTH') : undefined
}

/** `KEY=value` of --build-arg. */
function parseBuildArgs(pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const pair of pairs) {
    const eq = pair.indexOf('=')
    if (eq <= 0) throw new InvalidArgumentError('invalid_argument', `--build-arg: expected KEY=value, got "${pair}"`)
    out[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return out
}

/**
 * Builds an image template on the server, printing progress and step output; Ctrl-C cancels it
 * (nothing is left). Progress and step lines come from the image and the Dockerfile, and are always
 * made printable; step output is raw unless it goes to a terminal (see createOutputWriter).
 */
export async function buildImageOnServer(name: string, flags: ImageBuildFlags, cmd: Command): Promise<void> {
  const given = [flags.image, flags.imageArchive, flags.dockerfile ?? flags.context].filter((v) => v !== undefined)
  if (given.length !== 1) throw new InvalidArgumentError('invalid_argument', 'template build: expected one of --image, --image-archive or --dockerfile/--context')
  const registryAuth = flags.image !== undefined ? await registryAuthOf(flags) : undefined
  const source = flags.image !== undefined
    ? { image: flags.image, ...(registryAuth ? { registryAuth } : {}) }
    : flags.imageArchive !== undefined
      ? { imageArchive: flags.imageArchive }
      : { context: flags.context ?? '.', dockerfile: flags.dockerfile ?? 'Dockerfile', buildArgs: parseBuildArgs(flags.buildArg), ...(flags.noCache ? { noCache: true } : {}) }
  const writeStdout = createOutputWriter(process.stdout)
  const writeStderr = createOutputWriter(process.stderr)
  const { template } = await buildTemplate(name, {
    ...connectionOf(cmd),
    ...source,
    ...(flags.memory ? { memoryMiB: flags.memory } : {}),
    ...(flags.cpus ? { cpus: flags.cpus } : {}),
    ...(flags.start ? { start: flags.start } : {}),
    signal: interruptSignal(),
    onEvent(event) {
      if (event.type === 'progress') process.stderr.write(`${printable(event.message)}\n`)
      else if (event.type === 'step') process.stderr.write(`==> step ${event.index + 1}: ${printable(event.cmd)}${event.cached ? ' (cached)' : ''}\n`)
      else if (event.type === 'stdout') writeStdout(Buffer.from(event.data, 'base64'))
      else if (event.type === 'stderr') writeStderr(Buffer.from(event.data, 'base64'))
    },
  })
  if (flags.json) return printJson(template)
  process.stdout.write(`${template.name} version ${template.version} built in ${formatDuration(template.buildMs)}${sourceText(template) ? ` from ${sourceText(template)}` : ''}\n`)
}

/** Where an image template came from, in a few words. */
export function sourceText(t: TemplateInfo): string {
  if (t.source) return t.source.kind === 'dockerfile' ? `Dockerfile (FROM ${t.source.reference ?? t.source.template ?? '?'})` : (t.source.reference ?? t.source.kind)
  if (t.snapshotId) return `snapshot ${t.snapshotId}`
  return ''
}

/** Registers `template rm` and `template prune`. */
export function registerTemplateRemove(template: Command): void {
  template
    .command('prune')
    .description('remove the image layers no template stands on (the Dockerfile build cache among them)')
    .action(async (_flags: unknown, cmd: Command) => {
      const { removedLayers } = await pruneTemplateLayers(connectionOf(cmd))
      process.stdout.write(`${removedLayers} layer${removedLayers === 1 ? '' : 's'} freed\n`)
    })
  template
    .command('rm')
    .description('delete every version of a template, and the image layers no other template stands on')
    .argument('<name>', 'template')
    .action(async (name: string, _flags: unknown, cmd: Command) => {
      const { removedLayers } = await deleteTemplate(name, connectionOf(cmd))
      process.stdout.write(`${name} deleted (${removedLayers} layer${removedLayers === 1 ? '' : 's'} freed)\n`)
    })
}
