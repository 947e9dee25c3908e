/** Small pieces shared by the pages: state badges, labels, relative times, error lines. */
import { useEffect, useState } from 'preact/hooks'
export { formatBytes } from '../shared/format-bytes.js'

/** A sandbox's state as a coloured badge. */
export function StateBadge({ state }: { state: string }) {
  return <span class={`badge state-${state}`}>{state}</span>
}

/** Labels as key=value chips. */
export function Labels({ labels }: { labels: Record<string, string> }) {
  const entries = Object.entries(labels)
  if (entries.length === 0) return <span class="muted">–</span>
  return (
    <span class="labels">
      {entries.map(([k, v]) => (
        <span class="chip" data-label={`${k}=${v}`}>
          {k}={v}
        </span>
      ))}
    </span>
  )
}

/** The API's message, when there is one. */
export function ErrorLine({ error }: { error: string | undefined }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null
}

/** A ticking "12 s ago" / "in 4 min" for a time, with the time itself as the tooltip. */
export function Ago({ iso }: { iso: string }) {
  const [now, setNow] = useState(Date.now())
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000)
    return () => clearInterval(t)
  }, [])
  return <time dateTime={iso} title={new Date(iso).toLocaleString()}>{relative(Date.parse(iso) - now)}</time>
}

/** "in 3 min", "12 s ago". */
export function relative(deltaMs: number): string {
  const s = Math.round(Math.abs(deltaMs) / 1000)
  const text = s < 60 ? `${s} s` : s < 3600 ? `${Math.round(s / 60)} min` : s < 86_400 ? `${(s / 3600).toFixed(1)} h` : `${(s / 86_400).toFixed(1)} d`
  return deltaMs >= 0 ? `in ${text}` : `${text} ago`
}

/** Sandstorm's mark: a bolt (drawn, not a glyph, so that it needs no emoji font). */
export function Logo() {
  return (
    <svg class="logo" viewBox="0 0 16 16" width="18" height="18" aria-hidden="true">
      <path d="M9.5 1 3 9h4l-1 6 7-8.5H9z" fill="currentColor" />
    </svg>
  )
}
