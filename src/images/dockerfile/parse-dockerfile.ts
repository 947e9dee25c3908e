/**
 * A Dockerfile read into the steps Sandstorm builds, with everything it does not build refused
 * up front (naming the line and the instruction), so a build never runs half a Dockerfile. The
 * grammar is dockerfile-ast's; words are expanded later (plan-steps.ts), once the FROM's
 * environment is known, except FROM's own, which only sees the ARGs before it.
 */
import { DockerfileParser } from 'dockerfile-ast'
import type { Instruction, JSONInstruction, ModifiableInstruction, PropertyInstruction, From } from 'dockerfile-ast'
import { SandstormError } from '../../shared/index.js'
import { expandWord } from './shell-word.js'

/** A command as written: exec (JSON) form, or shell form run through SHELL. */
export type DockerfileCommand = { exec: string[] } | { shell: string }

/** A name and its value as written (unexpanded). */
export interface RawPair {
  name: string
  value: string
}

/** What every parsed instruction has. */
export interface InstructionBase {
  /** 0-based over all instructions, FROM and the ARGs before it included. */
  index: number
  /** 1-based line where it starts. */
  line: number
  /** The instruction as written, continuation lines joined. */
  text: string
}

/** An instruction after FROM, its words not yet expanded. */
export type DockerfileStep = InstructionBase &
  (
    | { kind: 'run'; command: DockerfileCommand; network: boolean }
    | { kind: 'copy'; add: boolean; sources: string[]; dest: string; chown?: string; chmod?: string }
    | { kind: 'env'; pairs: RawPair[] }
    | { kind: 'arg'; pairs: { name: string; value?: string }[] }
    | { kind: 'label'; pairs: RawPair[] }
    | { kind: 'workdir'; path: string }
    | { kind: 'user'; user: string }
    | { kind: 'expose'; ports: string[] }
    | { kind: 'cmd' | 'entrypoint'; command: DockerfileCommand }
    | { kind: 'shell'; argv: string[] }
    | { kind: 'maintainer' }
  )

/** A Dockerfile as Sandstorm builds it: one FROM, then steps. */
export interface ParsedDockerfile {
  /** The ARGs before FROM (they take indices 0..n-1). */
  globalArgs: (InstructionBase & { values: Record<string, string | undefined> })[]
  from: InstructionBase & { image: string }
  steps: DockerfileStep[]
  /** The `# escape=` directive's character. */
  escapeChar: string
  /** Every instruction, FROM included. */
  instructionCount: number
}

const refused: Record<string, string> = {
  ONBUILD: 'ONBUILD is not supported (a template is not a base image for later builds)',
  HEALTHCHECK: 'HEALTHCHECK is not supported (sandboxes have no health checks)',
  VOLUME: 'VOLUME is not supported (a sandbox has one root file system)',
  STOPSIGNAL: 'STOPSIGNAL is not supported (a sandbox is stopped as a whole)',
}

const knownFlags: Record<string, Record<string, true>> = {
  RUN: { network: true },
  COPY: { chown: true, chmod: true, link: true },
  ADD: { chown: true, chmod: true, link: true },
  FROM: { platform: true },
}

/**
 * Reads `text` as a Dockerfile; `buildArgs` expand FROM (through the ARGs before it). Throws
 * `invalid_argument` naming the line and instruction of anything not supported.
 */
export function parseDockerfile(text: string, buildArgs: Readonly<Record<string, string>> = {}): ParsedDockerfile {
  const doc = DockerfileParser.parse(text)
  const escapeChar = doc.getEscapeCharacter()
  const instructions = doc.getInstructions()
  const globalArgs: ParsedDockerfile['globalArgs'] = []
  const globalEnv: Record<string, string> = Object.create(null)
  let from: ParsedDockerfile['from'] | undefined
  const steps: DockerfileStep[] = []

  for (const [index, ins] of instructions.entries()) {
    const keyword = ins.getKeyword()
    const line = ins.getRange().start.line + 1
    const base: InstructionBase = { index, line, text: writtenText(ins) }
    const where = `line ${line} (${keyword})`
    const refuse = (why: string): never => {
      throw new SandstormError('invalid_argument', `Dockerfile ${where}: ${why}`)
    }
    if (refused[keyword]) refuse(refused[keyword])
    if ('getHeredocs' in ins && (ins as unknown as { getHeredocs(): unknown[] }).getHeredocs().length > 0) refuse('heredocs (<<EOF) are not supported; write the lines as a RUN or COPY a file')
    checkFlags(ins, keyword, refuse)

    if (!from) {
      if (keyword === 'ARG') {
        const values: Record<string, string | undefined> = {}
        for (const { name, value } of argPairs(ins as PropertyInstruction, refuse)) {
          const v = buildArgs[name] ?? (value === undefined ? undefined : expandWord(value, globalEnv, { escapeChar, where }))
          values[name] = v
          if (v !== undefined) globalEnv[name] = v
          else delete globalEnv[name]
        }
        globalArgs.push({ ...base, values })
        continue
      }
      if (keyword !== 'FROM') refuse('expected FROM (or ARG) as the first instruction')
      const f = ins as From
      const args = f.getArguments()
      if (args.length !== 1 && !(args.length === 3 && args[1]!.getValue().toUpperCase() === 'AS')) refuse('expected FROM <image or template> [AS <name>]')
      const platform = f.getPlatformFlag()?.getValue()
      if (platform != null && expandWord(platform, globalEnv, { escapeChar, where }) !== 'linux/amd64') refuse(`expected --platform=linux/amd64 (the only platform built here), got ${JSON.stringify(platform)}`)
      const image = expandWord(args[0]!.getValue(), globalEnv, { escapeChar, where })
      if (image === '') refuse(`expected an image or template, got ${JSON.stringify(args[0]!.getValue())}, which expands to nothing`)
      from = { ...base, image }
      continue
    }

    switch (keyword) {
      case 'FROM':
        refuse('multi-stage builds are not supported: expected one FROM')
        break
      case 'RUN': {
        const network = flagValue(ins, 'network') ?? 'default'
        if (network !== 'default' && network !== 'none') refuse(`expected --network=default or --network=none, got --network=${network}`)
        steps.push({ ...base, kind: 'run', command: commandOf(ins as JSONInstruction, refuse), network: network === 'default' })
        break
      }
      case 'CMD':
      case 'ENTRYPOINT':
        steps.push({ ...base, kind: keyword === 'CMD' ? 'cmd' : 'entrypoint', command: commandOf(ins as JSONInstruction, refuse) })
        break
      case 'SHELL': {
        const command = commandOf(ins as JSONInstruction, refuse)
        if (!('exec' in command) || command.exec.length === 0) refuse('expected the JSON form, e.g. SHELL ["/bin/bash", "-c"]')
        steps.push({ ...base, kind: 'shell', argv: (command as { exec: string[] }).exec })
        break
      }
      case 'COPY':
      case 'ADD': {
        const words = jsonArray(ins) ?? (ins as ModifiableInstruction).getArguments().map((a) => a.getValue())
        if (words.length < 2) refuse(`expected ${keyword} <source>... <destination>, got ${words.length} argument(s)`)
        // Caught here for what is written as a URL; a URL made by a variable is caught when planned.
        if (keyword === 'ADD') for (const w of words.slice(0, -1)) if (isUrl(w)) refuse(addUrlRefusal(w))
        const chown = flagValue(ins, 'chown')
        const chmod = flagValue(ins, 'chmod')
        steps.push({
          ...base,
          kind: 'copy',
          add: keyword === 'ADD',
          sources: words.slice(0, -1),
          dest: words[words.length - 1]!,
          ...(chown !== undefined && { chown }),
          ...(chmod !== undefined && { chmod }),
        })
        break
      }
      case 'ENV':
      case 'LABEL': {
        const props = (ins as PropertyInstruction).getProperties()
        if (props.length === 0) refuse(`expected ${keyword} <name>=<value>...`)
        const pairs = props.map((p) => {
          if (p.getValue() === null && p.getAssignmentOperator() === null) refuse(`expected ${keyword} <name>=<value> or ${keyword} <name> <value>, got ${JSON.stringify(p.getName())} with no value`)
          return { name: p.getName(), value: joinContinuations(p.getUnescapedValue() ?? '', escapeChar) }
        })
        steps.push({ ...base, kind: keyword === 'ENV' ? 'env' : 'label', pairs })
        break
      }
      case 'ARG':
        steps.push({ ...base, kind: 'arg', pairs: argPairs(ins as PropertyInstruction, refuse) })
        break
      case 'WORKDIR':
      case 'USER': {
        const value = ins.getArgumentsContent()?.trim() ?? ''
        if (value === '') refuse(`expected ${keyword} <${keyword === 'USER' ? 'user[:group]' : 'path'}>`)
        steps.push(keyword === 'USER' ? { ...base, kind: 'user', user: value } : { ...base, kind: 'workdir', path: value })
        break
      }
      case 'EXPOSE': {
        const ports = ins.getArguments().map((a) => a.getValue())
        if (ports.length === 0) refuse('expected EXPOSE <port>[/<protocol>]...')
        steps.push({ ...base, kind: 'expose', ports })
        break
      }
      case 'MAINTAINER':
        steps.push({ ...base, kind: 'maintainer' })
        break
      default:
        refuse(`unknown instruction ${JSON.stringify(ins.getInstruction())}`)
    }
  }
  if (!from) throw new SandstormError('invalid_argument', 'Dockerfile: expected a FROM instruction, found none')
  return { globalArgs, from, steps, escapeChar, instructionCount: instructions.length }
}

/** The instruction as written, continuation lines joined (the cmd of its build events). */
function writtenText(ins: Instruction): string {
  const flags = 'getFlags' in ins ? (ins as ModifiableInstruction).getFlags().map((f) => f.toString()) : []
  return [ins.getInstruction(), ...flags, ins.getArgumentsContent()?.trim() ?? ''].filter((s) => s !== '').join(' ')
}

function checkFlags(ins: Instruction, keyword: string, refuse: (why: string) => never): void {
  if (!('getFlags' in ins)) return
  for (const flag of (ins as ModifiableInstruction).getFlags()) {
    const name = flag.getName()
    if (keyword === 'COPY' && name === 'from') refuse('COPY --from (multi-stage builds) is not supported')
    if (keyword === 'RUN' && name === 'mount') refuse('RUN --mount is not supported')
    if (!knownFlags[keyword]?.[name]) refuse(`the flag --${name} is not supported${knownFlags[keyword] ? ` (expected ${Object.keys(knownFlags[keyword]).map((f) => `--${f}`).join(', ')})` : ''}`)
  }
}

function flagValue(ins: Instruction, name: string): string | undefined {
  if (!('getFlags' in ins)) return undefined
  const flag = (ins as ModifiableInstruction).getFlags().find((f) => f.getName() === name)
  return flag ? (flag.getValue() ?? '') : undefined
}

function argPairs(ins: PropertyInstruction, refuse: (why: string) => never): { name: string; value?: string }[] {
  const props = ins.getProperties()
  if (props.length === 0) refuse('expected ARG <name>[=<default>]')
  return props.map((p) => {
    const raw = p.getUnescapedValue()
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(p.getName())) refuse(`expected a variable name, got ${JSON.stringify(p.getName())}`)
    return raw === null ? { name: p.getName() } : { name: p.getName(), value: raw }
  })
}

/**
 * The exec form when the arguments are a JSON array of strings (Docker's rule: anything else,
 * even `[` followed by bad JSON, is the shell form). dockerfile-ast's own JSON strings lose spaces
 * and escapes, so the text is read with JSON.parse.
 */
function jsonArray(ins: Instruction): string[] | null {
  const content = ins.getArgumentsContent()?.trim() ?? ''
  if (!content.startsWith('[')) return null
  try {
    const value: unknown = JSON.parse(content)
    return Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : null
  } catch {
    return null
  }
}

function commandOf(ins: JSONInstruction, refuse: (why: string) => never): DockerfileCommand {
  const exec = jsonArray(ins)
  if (exec) return { exec }
  const shell = ins.getArgumentsContent()?.trim() ?? ''
  if (shell === '') refuse(`expected a command (${ins.getKeyword()} <command> or ${ins.getKeyword()} ["executable", "arg"...])`)
  return { shell }
}

/** A value spanning lines, with its line continuations removed (as the instruction's text has them). */
function joinContinuations(value: string, escapeChar: string): string {
  const esc = escapeChar.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')
  return value.replace(new RegExp(`${esc}\\r?\\n`, 'g'), '')
}

/** Is this ADD source a URL or a git remote (which ADD would fetch)? */
export function isUrl(source: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(source) || source.startsWith('git@')
}

/** Why ADD of a URL is refused, and what to do instead. */
export function addUrlRefusal(source: string): string {
  return `ADD of a URL (${JSON.stringify(source)}) is not supported: fetch it in a RUN step, or put the file in the build context`
}
