/**
 * An e2b template (TemplateBuildStartV2: a FROM, steps, a start and a ready command) as the
 * Dockerfile Sandstorm builds. Each COPY's files come in one tarball per files hash, unpacked into
 * `<context>/<hash>/`, so a COPY reads `<hash>/<src>`. Every argument is the client's: each goes
 * into the text in a form that cannot end its line (JSON arrays, quoted values) or is refused, so
 * a step never becomes two instructions.
 */
import { posix } from 'node:path'
import { parseImageReference } from '../../images/reference.js'
import { SandstormError, templateNameSchema, templateStartSchema } from '../../shared/index.js'
import type { RegistryCredentials } from '../../images/contracts.js'
import type { TemplateStartInput } from '../../shared/index.js'
import { show } from '../validation.js'
import type { StartBuildBody, TemplateStep } from './template-build-wire.js'

/** What a template build turns into. */
export interface DockerfilePlan {
  /** The FROM: an image (with the registry credentials sent with it) or a template of this host. */
  from: { kind: 'image'; image: string; credentials?: RegistryCredentials } | { kind: 'template'; template: string }
  /** The Dockerfile, one instruction a line, FROM first. */
  dockerfile: string
  /**
   * For each line of `dockerfile`, the e2b step it came from, as E2B's status names steps:
   * `base` for FROM, else the step's 1-based number (the SDK's stack trace of that builder call).
   */
  stepOf: string[]
  /** The files hashes of the COPY steps, each to be unpacked into `<context>/<hash>/`. */
  filesHashes: string[]
  /** The start command with its ready check, when the template sets one. */
  start?: TemplateStartInput
}

const envName = /^[A-Za-z_][A-Za-z0-9_]*$/
const userSpec = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$/
const startUser = /^[a-z_][a-z0-9_-]*$|^[0-9]+$/
const octalMode = /^[0-7]{3,4}$/
/** A newline ends an instruction and a NUL ends nothing well: neither may sit in a line's raw text. */
const lineBreaking = /[\0\r\n]/

/** The Dockerfile (and start) of a validated TemplateBuildStartV2 body; bad steps are refused with `invalid_argument` naming the field. */
export function dockerfilePlan(body: StartBuildBody): DockerfilePlan {
  const from = fromOf(body)
  const lines: string[] = [from.kind === 'image' ? `FROM ${from.image}` : `FROM ${from.template}`]
  const stepOf: string[] = ['base']
  const filesHashes: string[] = []
  // USER and WORKDIR in effect, for a RUN's own user and for the start command.
  let user: string | undefined
  let workdir: string | undefined
  const emit = (line: string, step: number): void => {
    lines.push(line)
    stepOf.push(String(step + 1))
  }

  body.steps.forEach((step, i) => {
    const at = `steps[${i}]`
    const args = step.args
    switch (step.type.toUpperCase()) {
      case 'RUN': {
        const cmd = arg(step, 0, at)
        if (cmd.includes('\0')) refuse(`${at}.args[0]`, 'a shell command without NUL bytes', cmd)
        const runAs = args[1] ?? ''
        if (runAs !== '' && !userSpec.test(runAs)) refuse(`${at}.args[1]`, 'a user (name or uid, optionally :group)', runAs)
        // Exec form: the command is a JSON string, so its newlines (a heredoc, say) stay in it.
        const run = `RUN ${JSON.stringify(['/bin/sh', '-c', cmd])}`
        if (runAs === '' || runAs === user) {
          emit(run, i)
        } else {
          // A Dockerfile has no per-RUN user: switch, run, switch back. E2B's steps run as root unless told.
          emit(`USER ${runAs}`, i)
          emit(run, i)
          emit(`USER ${user ?? 'root'}`, i)
        }
        return
      }
      case 'COPY': {
        const src = arg(step, 0, at)
        const dest = arg(step, 1, at)
        const owner = args[2] ?? ''
        const mode = args[3] ?? ''
        if (step.filesHash === undefined) refuse(`${at}.filesHash`, "the SHA-256 of the COPY's files (the SDK computes it)", undefined)
        if (lineBreaking.test(src) || src.includes('$') || src.startsWith('/') || posix.normalize(src).split('/')[0] === '..') {
          refuse(`${at}.args[0]`, 'a path relative to the build context, inside it, without $ or line breaks', src)
        }
        if (lineBreaking.test(dest)) refuse(`${at}.args[1]`, 'a destination path without line breaks', dest)
        if (owner !== '' && !userSpec.test(owner)) refuse(`${at}.args[2]`, 'an owner (user or user:group)', owner)
        if (mode !== '' && !octalMode.test(mode)) refuse(`${at}.args[3]`, 'an octal mode such as "0755"', mode)
        if (!filesHashes.includes(step.filesHash)) filesHashes.push(step.filesHash)
        const flags = [owner && `--chown=${owner}`, mode && `--chmod=${mode}`].filter(Boolean).join(' ')
        emit(`COPY ${flags ? `${flags} ` : ''}${JSON.stringify([posix.join(step.filesHash, src), dest])}`, i)
        return
      }
      case 'ENV': {
        if (args.length === 0 || args.length % 2 !== 0) refuse(`${at}.args`, 'name and value pairs', args)
        const pairs: string[] = []
        for (let k = 0; k < args.length; k += 2) {
          const name = args[k]!
          const value = args[k + 1]!
          if (!envName.test(name)) refuse(`${at}.args[${k}]`, 'an environment variable name', name)
          if (lineBreaking.test(value)) refuse(`${at}.args[${k + 1}]`, 'a value without line breaks or NUL bytes', value)
          pairs.push(`${name}="${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`)
        }
        emit(`ENV ${pairs.join(' ')}`, i)
        return
      }
      case 'WORKDIR': {
        const dir = arg(step, 0, at)
        if (lineBreaking.test(dir) || dir.trim() !== dir) refuse(`${at}.args[0]`, 'a directory without line breaks or surrounding spaces', dir)
        workdir = posix.resolve(workdir ?? '/', dir)
        emit(`WORKDIR ${dir}`, i)
        return
      }
      case 'USER': {
        const name = arg(step, 0, at)
        if (!userSpec.test(name)) refuse(`${at}.args[0]`, 'a user (name or uid, optionally :group)', name)
        user = name
        emit(`USER ${name}`, i)
        return
      }
      default:
        refuse(`${at}.type`, 'one of "RUN", "COPY", "ENV", "WORKDIR", "USER"', step.type)
    }
  })

  return { from, dockerfile: lines.join('\n') + '\n', stepOf, filesHashes, start: startOf(body, user, workdir) }
}

function fromOf(body: StartBuildBody): DockerfilePlan['from'] {
  const image = body.fromImage ?? ''
  const template = body.fromTemplate ?? ''
  if ((image === '') === (template === '')) {
    throw new SandstormError('invalid_argument', `fromImage, fromTemplate: expected exactly one of them, got ${show({ fromImage: body.fromImage, fromTemplate: body.fromTemplate })}`)
  }
  if (template !== '') {
    const name = templateNameSchema.safeParse(template)
    if (!name.success) refuse('fromTemplate', 'a template name such as "debian"', template)
    if (body.fromImageRegistry) refuse('fromImageRegistry', 'nothing with fromTemplate', body.fromImageRegistry.type)
    return { kind: 'template', template }
  }
  // The reference's own grammar refuses white space, so the FROM line holds nothing else.
  try {
    parseImageReference(image)
  } catch (err) {
    throw new SandstormError('invalid_argument', `fromImage: ${(err as Error).message}`)
  }
  const registry = body.fromImageRegistry
  if (!registry) return { kind: 'image', image }
  if (registry.type !== 'registry') {
    refuse('fromImageRegistry.type', '"registry" (username and password; AWS and GCP registry logins are not served)', registry.type)
  }
  if (!registry.username || !registry.password) refuse('fromImageRegistry', 'a username and a password', '(one of them empty)')
  return { kind: 'image', image, credentials: { username: registry.username, password: registry.password } }
}

/** E2B's start and ready commands as Sandstorm's start: run as the template's last USER, in its last WORKDIR. */
function startOf(body: StartBuildBody, user: string | undefined, workdir: string | undefined): TemplateStartInput | undefined {
  const startCmd = body.startCmd ?? ''
  const readyCmd = body.readyCmd ?? ''
  if (startCmd === '') {
    if (readyCmd !== '') refuse('readyCmd', 'a readyCmd only with a startCmd (a ready check belongs to a start command)', readyCmd)
    return undefined
  }
  const name = user?.split(':')[0]
  const start: TemplateStartInput = {
    cmd: startCmd,
    ...(name !== undefined && startUser.test(name) ? { user: name } : {}),
    ...(workdir !== undefined ? { cwd: workdir } : {}),
    // Without a ready command E2B's start counts as ready once it is started.
    ready: { type: 'command', cmd: readyCmd === '' ? 'true' : readyCmd },
  }
  const parsed = templateStartSchema.safeParse(start)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    const field = issue.path[0] === 'cmd' ? 'startCmd' : issue.path[0] === 'ready' ? 'readyCmd' : issue.path.join('.')
    throw new SandstormError('invalid_argument', `${field}: expected ${issue.message}`)
  }
  return start
}

function arg(step: TemplateStep, index: number, at: string): string {
  const value = step.args[index]
  if (value === undefined || value === '') refuse(`${at}.args[${index}]`, `a value (a ${step.type} step's argument ${index + 1})`, value)
  return value
}

function refuse(field: string, expected: string, got: unknown): never {
  throw new SandstormError('invalid_argument', `${field}: expected ${expected}, got ${show(got)}`)
}
