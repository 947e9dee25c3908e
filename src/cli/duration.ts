import { InvalidArgumentError } from '@sandstorm/sdk'

const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** Parses `500ms`, `30s`, `10m`, `2h`, `1d`, or plain milliseconds, into whole milliseconds. */
export function parseDuration(text: string, what = 'duration'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text)
  const ms = m ? Math.round(Number(m[1]) * unitMs[m[2] ?? 'ms']!) : NaN
  if (!Number.isFinite(ms) || ms <= 0) {
    throw new InvalidArgumentError('invalid_argument', `${what}: expected a duration such as 500ms, 30s, 10m, 2h or plain milliseconds, got "${text}"`)
  }
  return ms
}

/** A short human form of a duration, such as `42s`, `9m`, `3h`, `2d`. */
export function formatDuration(ms: number): string {
  const s = Math.round(Math.abs(ms) / 1000)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86400) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86400)}d`
}
