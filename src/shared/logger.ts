import { pino, type Logger } from 'pino'

export type { Logger }

/** Options of createLogger. */
export interface LoggerOptions {
  /** @default process.env.SANDSTORM_LOG_LEVEL ?? 'info' */
  level?: string
  /** Name printed on every line. @default 'sandstorm' */
  name?: string
}

/** Structured logs, one JSON line per event, on stderr so that CLI output stays clean. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    { name: options.name ?? 'sandstorm', level: options.level ?? process.env.SANDSTORM_LOG_LEVEL ?? 'info' },
    pino.destination(2),
  )
}

/** A logger that drops everything, for tests and libraries embedded in other programs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
