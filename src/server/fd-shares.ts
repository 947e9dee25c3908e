/**
 * How the server shares the process's open-file limit. Anyone who reaches its port can open
 * connections, and each request for a sandbox's port opens one more, into the sandbox (a socket
 * where the agent runs in this process): a bound on either alone would let the other take every
 * descriptor. So a quarter goes to connections to the port, a quarter to connections into
 * sandboxes, and half stays for what the sandboxes need otherwise (their channels, commands,
 * disks, network helpers).
 */
import { readFileSync } from 'node:fs'

/** The bounds the open-file limit gives. */
export interface FdShares {
  /** Connections the HTTP port holds at once (upgraded ones too). */
  maxConnections: number
  /** Connections into sandboxes held at once, all sandboxes together (ingress and tunnels). */
  maxUpstream: number
  /** Of those, what one sandbox may hold: a quarter, at most 1,024, so that no one sandbox takes them all. */
  maxUpstreamPerSandbox: number
}

/** The soft open-file limit of this process, or 1,024 (the usual one) where it cannot be read. */
export function openFileLimit(limitsFile = '/proc/self/limits'): number {
  try {
    const soft = /^Max open files\s+(\d+)/m.exec(readFileSync(limitsFile, 'utf8'))?.[1]
    if (soft !== undefined) return Number(soft)
  } catch {
    // No procfs: the usual limit.
  }
  return 1024
}

/** The shares of `limit` descriptors. */
export function fdSharesOf(limit: number): FdShares {
  const quarter = Math.max(1, Math.floor(limit / 4))
  return { maxConnections: quarter, maxUpstream: quarter, maxUpstreamPerSandbox: perSandboxShareOf(quarter) }
}

/** What one sandbox may hold of `maxUpstream` connections into sandboxes: a quarter, at most 1,024, at least 1. */
export function perSandboxShareOf(maxUpstream: number): number {
  return Math.max(1, Math.min(1024, Math.floor(maxUpstream / 4)))
}

/** The shares of this process's open-file limit. */
export function defaultFdShares(limitsFile?: string): FdShares {
  return fdSharesOf(openFileLimit(limitsFile))
}
