/**
 * A parsed Dockerfile over its FROM's defaults, worked out before anything runs: every word
 * expanded as Docker expands it (ENV, ARG and the image's Env in effect at that line), what each
 * RUN runs with (argv, env, cwd, user), where each COPY goes, and the defaults the template gets.
 */
import { posix } from 'node:path'
import { SandstormError } from '../../shared/index.js'
import type { ImageDefaults } from '../contracts.js'
import { addUrlRefusal, isUrl, type DockerfileCommand, type InstructionBase, type ParsedDockerfile } from './parse-dockerfile.js'
import { expandWord } from './shell-word.js'

/** A step as it will be built. */
export type PlannedStep = InstructionBase &
  (
    | { kind: 'run'; argv: string[]; env: Record<string, string>; cwd: string; user: string; network: boolean }
    | {
        kind: 'copy'
        add: boolean
        /** Context paths or globs, expanded. */
        sources: string[]
        /** Absolute; ends with `/` when written so (a directory). */
        dest: string
        chown?: string
        chmod?: number
      }
    /** A WORKDIR: the directory is made when the chain lacks it, owned by `user`. */
    | { kind: 'workdir'; path: string; user: string }
    /** A step that only changes the defaults or the variables (no layer). */
    | { kind: 'meta' }
  )

/** The plan of a build. */
export interface DockerfilePlan {
  /** The ARGs before FROM, then every step after it. */
  steps: PlannedStep[]
  /** The template's defaults once every step applied. */
  defaults: ImageDefaults
  /** Build args no ARG declared (Docker warns about them too). */
  unusedBuildArgs: string[]
}

const defaultShell = ['/bin/sh', '-c']

/** Plans `parsed` over `base` (the FROM's defaults) with `buildArgs`; refuses bad words with `invalid_argument`. */
export function planDockerfile(parsed: ParsedDockerfile, base: ImageDefaults, buildArgs: Readonly<Record<string, string>> = {}): DockerfilePlan {
  const { escapeChar } = parsed
  const defaults: ImageDefaults = structuredClone(base)
  const globals: Record<string, string | undefined> = {}
  const used = new Set<string>()
  for (const g of parsed.globalArgs) {
    Object.assign(globals, g.values)
    for (const name of Object.keys(g.values)) used.add(name)
  }
  // ARGs in effect after FROM (a name with undefined: declared, no value).
  const args = new Map<string, string | undefined>()
  let shell = defaultShell
  let cmdSet = false
  const steps: PlannedStep[] = parsed.globalArgs.map((g) => ({ index: g.index, line: g.line, text: g.text, kind: 'meta' }))
  steps.push({ index: parsed.from.index, line: parsed.from.line, text: parsed.from.text, kind: 'meta' })

  /** ENV wins over ARG, as in Docker. */
  const wordEnv = (): Record<string, string> => {
    const env: Record<string, string> = Object.create(null)
    for (const [name, value] of args) if (value !== undefined) env[name] = value
    return Object.assign(env, defaults.env)
  }
  const cwd = (): string => defaults.workingDir || '/'

  for (const step of parsed.steps) {
    const where = `Dockerfile line ${step.line} (${step.text.split(' ')[0]})`
    const expand = (word: string): string => expandWord(word, wordEnv(), { escapeChar, where })
    const refuse = (why: string): never => {
      throw new SandstormError('invalid_argument', `${where}: ${why}`)
    }
    const base = { index: step.index, line: step.line, text: step.text }
    const argvOf = (command: DockerfileCommand): string[] => ('exec' in command ? [...command.exec] : [...shell, command.shell])
    switch (step.kind) {
      case 'run': {
        const env: Record<string, string> = {}
        for (const [name, value] of args) if (value !== undefined) env[name] = value
        Object.assign(env, defaults.env)
        steps.push({ ...base, kind: 'run', argv: argvOf(step.command), env, cwd: cwd(), user: defaults.user || 'root', network: step.network })
        continue
      }
      case 'copy': {
        const sources = step.sources.map(expand)
        if (step.add) {
          for (const s of sources) if (isUrl(s)) refuse(addUrlRefusal(s))
        }
        const rawDest = expand(step.dest)
        if (rawDest === '') refuse('expected a destination, got an empty one')
        const dirLike = rawDest.endsWith('/') || rawDest === '.' || rawDest.endsWith('/.')
        const abs = posix.resolve('/', cwd(), rawDest)
        const planned: PlannedStep = { ...base, kind: 'copy', add: step.add, sources, dest: dirLike && abs !== '/' ? `${abs}/` : abs }
        if (step.chown !== undefined) {
          const chown = expand(step.chown)
          if (!/^[^:\s]+(:[^:\s]+)?$/.test(chown)) refuse(`expected --chown=<user>[:<group>], got ${JSON.stringify(chown)}`)
          planned.chown = chown
        }
        if (step.chmod !== undefined) {
          const chmod = expand(step.chmod)
          if (!/^[0-7]{3,4}$/.test(chmod)) refuse(`expected --chmod=<octal mode> such as 755, got ${JSON.stringify(chmod)}`)
          planned.chmod = parseInt(chmod, 8)
        }
        steps.push(planned)
        continue
      }
      case 'env': {
        // Every value sees the variables as they were before this line (Docker's rule).
        const values = step.pairs.map((p) => [p.name, expand(p.value)] as const)
        for (const [name, value] of values) {
          if (name === '' || name.includes('=')) refuse(`expected a variable name, got ${JSON.stringify(name)}`)
          defaults.env[name] = value
        }
        break
      }
      case 'label': {
        const values = step.pairs.map((p) => [p.name, expand(p.value)] as const)
        for (const [name, value] of values) defaults.labels[name] = value
        break
      }
      case 'arg':
        for (const { name, value } of step.pairs) {
          used.add(name)
          args.set(name, buildArgs[name] ?? (value !== undefined ? expand(value) : globals[name]))
        }
        break
      case 'workdir': {
        const path = posix.resolve('/', cwd(), expand(step.path))
        defaults.workingDir = path
        steps.push({ ...base, kind: 'workdir', path, user: defaults.user || 'root' })
        continue
      }
      case 'user': {
        const user = expand(step.user)
        if (user === '' || /\s/.test(user)) refuse(`expected USER <user>[:<group>], got ${JSON.stringify(user)}`)
        defaults.user = user
        break
      }
      case 'expose': {
        const ports = new Set(defaults.exposedPorts)
        for (const raw of step.ports) {
          const word = expand(raw)
          const m = /^(\d{1,5})(?:-(\d{1,5}))?(?:\/(tcp|udp|sctp))?$/i.exec(word)
          const from = Number(m?.[1])
          const to = m?.[2] === undefined ? from : Number(m[2])
          if (!m || !(from >= 1 && to <= 65535 && from <= to && to - from < 1024)) refuse(`expected <port>[-<port>][/tcp|udp] with ports 1-65535, got ${JSON.stringify(word)}`)
          for (let p = from; p <= to; p++) ports.add(p)
        }
        defaults.exposedPorts = [...ports].sort((a, b) => a - b)
        break
      }
      case 'cmd':
        defaults.cmd = argvOf(step.command)
        cmdSet = true
        break
      case 'entrypoint': {
        const argv = argvOf(step.command)
        if (argv.length > 0) defaults.entrypoint = argv
        else delete defaults.entrypoint
        // A new ENTRYPOINT drops the base image's CMD, not one set in this Dockerfile.
        if (!cmdSet) delete defaults.cmd
        break
      }
      case 'shell':
        shell = step.argv
        break
      case 'maintainer':
        break
    }
    steps.push({ ...base, kind: 'meta' })
  }
  const unusedBuildArgs = Object.keys(buildArgs).filter((name) => !used.has(name))
  return { steps, defaults, unusedBuildArgs }
}
