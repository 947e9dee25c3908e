/**
 * Budgets of signed-URL scans per client (a signed URL that names no sandbox is tried against every
 * running sandbox's key): token buckets, by address, an IPv6 client by its /64 (one host is given
 * a whole /64 and may use any address in it), the least recently used forgotten past a bound.
 */
import { isIPv6 } from 'node:net'

/** The buckets. */
export interface ScanBudgets {
  /** Takes one scan from the client's bucket; false when it is empty. */
  take(address: string): boolean
  /** Clients whose buckets are kept now. */
  readonly size: number
}

/** Options of createScanBudgets. */
export interface ScanBudgetsOptions {
  /** Scans a second a client's bucket refills with; it holds twice that. */
  perSecond: number
  /** Buckets kept at once; past that, the least recently used is forgotten (it starts full again). */
  maxClients: number
  /** The clock. @default Date.now */
  now?: () => number
}

/** Creates the buckets. */
export function createScanBudgets(options: ScanBudgetsOptions): ScanBudgets {
  const { perSecond, maxClients } = options
  const now = options.now ?? Date.now
  // A Map keeps insertion order: a bucket used is moved to the end, so the first is the least recently used.
  const buckets = new Map<string, { tokens: number; at: number }>()
  return {
    take(address) {
      const key = clientKey(address)
      const t = now()
      const bucket = buckets.get(key) ?? { tokens: 2 * perSecond, at: t }
      buckets.delete(key)
      // Forgetting the oldest, never all: a client that rotates addresses cannot refill everyone's bucket, its own included.
      if (buckets.size >= maxClients) buckets.delete(buckets.keys().next().value!)
      buckets.set(key, bucket)
      bucket.tokens = Math.min(2 * perSecond, bucket.tokens + ((t - bucket.at) / 1000) * perSecond)
      bucket.at = t
      if (bucket.tokens < 1) return false
      bucket.tokens--
      return true
    },
    get size() {
      return buckets.size
    },
  }
}

/** Whose bucket an address fills: an IPv4 address (mapped into IPv6 or not) as it is, an IPv6 address by its /64. */
export function clientKey(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address)
  if (mapped) return mapped[1]!
  const bare = address.split('%')[0]!
  if (!isIPv6(bare)) return address
  const [head = '', tail] = bare.split('::')
  const headGroups = head === '' ? [] : head.split(':')
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':')
  // A dotted IPv4 at the end stands for two groups.
  const width = (groups: string[]): number => groups.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0)
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(8 - width(headGroups) - width(tailGroups)).fill('0'), ...tailGroups]
  return `${groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`
}
