/** The start command of a golden build, from `template build --from` flags. */
import { InvalidArgumentError, type TemplateStartInput } from '@sandstorm/sdk'
import { parseDuration } from './duration.js'

/** The flags that make a start command. */
export interface StartFlags {
  start?: string
  startUser?: string
  readyHttp?: string
  readyCmd?: string
  readyTimeout?: string
}

/**
 * A start command from `--start`, `--start-user`, `--ready-http PORT[/PATH]` or `--ready-cmd`,
 * and `--ready-timeout`; undefined without `--start`. The server checks the rest (a 400 names the field).
 */
export function startFromFlags(flags: StartFlags): TemplateStartInput | undefined {
  const extras = (['startUser', 'readyHttp', 'readyCmd', 'readyTimeout'] as const).filter((k) => flags[k] !== undefined)
  if (flags.start === undefined) {
    if (extras.length > 0) throw new InvalidArgumentError('invalid_argument', `--${kebab(extras[0]!)} needs --start: expected the command to start`)
    return undefined
  }
  if ((flags.readyHttp === undefined) === (flags.readyCmd === undefined)) {
    throw new InvalidArgumentError('invalid_argument', '--start needs exactly one of --ready-http PORT[/PATH] or --ready-cmd CMD: expected how to tell it is ready')
  }
  return {
    cmd: flags.start,
    ...(flags.startUser !== undefined ? { user: flags.startUser } : {}),
    ready: flags.readyHttp !== undefined ? readyHttp(flags.readyHttp) : { type: 'command', cmd: flags.readyCmd! },
    ...(flags.readyTimeout !== undefined ? { readyTimeoutMs: parseDuration(flags.readyTimeout, '--ready-timeout') } : {}),
  }
}

function readyHttp(text: string): TemplateStartInput['ready'] {
  const m = /^(\d{1,5})(\/.*)?$/.exec(text)
  if (!m) throw new InvalidArgumentError('invalid_argument', `--ready-http: expected PORT or PORT/PATH such as 8080/health, got "${text}"`)
  return { type: 'http', port: Number(m[1]), path: m[2] ?? '/' }
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
}
