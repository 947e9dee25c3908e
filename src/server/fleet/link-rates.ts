/**
 * How often an agent may speak on the link: its heartbeats on one link, and how often one agent
 * identity may open a link. An agent holds a valid certificate and may still be broken or hostile:
 * each heartbeat was parsed, checked and written to SQLite, and each link's registration parsed
 * whole and written, as fast as it could send them.
 */

/** Limits of the link; each has a default fit for agents that beat every few seconds. */
export interface LinkRateOptions {
  /**
   * Heartbeats closer than this on one link are dropped unprocessed (beyond a small burst).
   * @default half the interval the server tells agents; 50 when it tells none (each agent keeps its own, 5_000 by default)
   */
  minHeartbeatGapMs?: number
  /** Heartbeats dropped in a row, with none kept between, after which the link is ended. @default 10 */
  maxDroppedHeartbeats?: number
  /** The first wait the server enforces before a link of an agent whose last link lasted less than `stableLinkMs`. @default 1_000 */
  firstReconnectDelayMs?: number
  /** The longest such wait; each short-lived link doubles it up to this. @default 30_000 */
  maxReconnectDelayMs?: number
  /** A link that lasted this long was no flap: the next one of the agent may open at once. @default 10_000 */
  stableLinkMs?: number
}

/** Heartbeats kept at once before the gap applies: the beat after registration and one rescheduled when the server sets the interval. */
const heartbeatBurst = 3

/** What to do with one heartbeat: process it, drop it unread, or end the link (a flood). */
export type HeartbeatVerdict = 'keep' | 'drop' | 'end'

/** The heartbeats of one link: a token bucket of `heartbeatBurst`, one token back per gap. */
export interface HeartbeatGate {
  admit(nowMs?: number): HeartbeatVerdict
  /** The gap it enforces. */
  readonly minGapMs: number
}

/** A gate for one link's heartbeats; `toldMs` is the interval the server told the agent, if any. */
export function createHeartbeatGate(toldMs: number | undefined, options: LinkRateOptions = {}): HeartbeatGate {
  // Half the interval: timer jitter, or a slow beat (it reads disk and lists sandboxes) followed by
  // a punctual one, brings two honest beats closer than the interval, never closer than half of it.
  const minGapMs = options.minHeartbeatGapMs ?? (toldMs !== undefined ? toldMs / 2 : 50)
  if (!(minGapMs > 0)) throw new RangeError(`minHeartbeatGapMs: expected a positive number of milliseconds, got ${minGapMs}`)
  const maxDropped = options.maxDroppedHeartbeats ?? 10
  let tokens = heartbeatBurst
  let refilledAtMs: number | undefined
  let dropped = 0
  return {
    minGapMs,
    admit(nowMs = performance.now()) {
      refilledAtMs ??= nowMs
      tokens = Math.min(heartbeatBurst, tokens + (nowMs - refilledAtMs) / minGapMs)
      refilledAtMs = nowMs
      if (tokens >= 1) {
        tokens -= 1
        dropped = 0
        return 'keep'
      }
      // An honest agent is never this many beats early in a row; a loop is, within a millisecond.
      return ++dropped > maxDropped ? 'end' : 'drop'
    },
  }
}

/** What the reconnect gate answers a new link: open it, or refuse it until `retryAfterMs` from now. */
export type ReconnectVerdict = { open: true; closed(nowMs?: number): void } | { open: false; retryAfterMs: number; firstRefusal: boolean }

/** How often each agent identity may open a link. */
export interface ReconnectGate {
  /** A new link of `agentId`; once opened, call `closed` when it ends. */
  admit(agentId: string, nowMs?: number): ReconnectVerdict
  /** How many agents it keeps a last link of. */
  readonly size: number
}

/** An agent's last link, as the reconnect gate keeps it. */
interface LastLink {
  openedAtMs: number
  closedAtMs?: number
  /** The wait this link's opening set for the next one. */
  delayMs: number
  notBeforeMs: number
  /** Whether a link was refused since: only the first refusal of a wait is logged. */
  refused: boolean
}

/**
 * A gate of links by agent: a link after one that lasted less than `stableLinkMs` waits a delay
 * that doubles with each such flap, up to the max (an honest agent's own backoff is 0.2-5 s, so the
 * server's is felt only by one that flaps again and again); one after a stable link opens at once.
 */
export function createReconnectGate(options: LinkRateOptions = {}): ReconnectGate {
  const firstDelayMs = options.firstReconnectDelayMs ?? 1_000
  const maxDelayMs = options.maxReconnectDelayMs ?? 30_000
  const stableMs = options.stableLinkMs ?? 10_000
  const agents = new Map<string, LastLink>()
  /**
   * Forgets agents whose last link closed long enough ago that their next one opens at once
   * anyway: an insecure fleet's join token lets its holder make up agent ids without end.
   */
  const forgetStale = (nowMs: number): void => {
    for (const [id, link] of agents) if (link.closedAtMs !== undefined && nowMs - link.closedAtMs > stableMs + maxDelayMs && nowMs >= link.notBeforeMs) agents.delete(id)
  }
  let sweptAtMs = -Infinity
  return {
    admit(agentId, nowMs = performance.now()) {
      if (nowMs - sweptAtMs > stableMs) {
        sweptAtMs = nowMs
        forgetStale(nowMs)
      }
      const last = agents.get(agentId)
      if (last && nowMs < last.notBeforeMs) {
        const firstRefusal = !last.refused
        last.refused = true
        return { open: false, retryAfterMs: Math.ceil(last.notBeforeMs - nowMs), firstRefusal }
      }
      // A link still open counts as lasting until now: a second link beside it replaces it.
      const lastedMs = last ? (last.closedAtMs ?? nowMs) - last.openedAtMs : Infinity
      const delayMs = lastedMs >= stableMs ? 0 : Math.min(maxDelayMs, Math.max(firstDelayMs, last!.delayMs * 2))
      const entry: LastLink = { openedAtMs: nowMs, delayMs, notBeforeMs: nowMs + delayMs, refused: false }
      agents.set(agentId, entry)
      return { open: true, closed: (at = performance.now()) => void (entry.closedAtMs ??= at) }
    },
    get size() {
      return agents.size
    },
  }
}
