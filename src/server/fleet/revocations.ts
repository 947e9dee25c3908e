/**
 * Agents whose certificates the server revoked (`sandstorm agents rm`), kept in
 * `<dataDir>/fleet/revoked-agents`, one agent id a line. An agent id is its certificate's name and
 * is never issued twice, so revoking the id revokes the certificate; a host that joins again with
 * the token gets a new id.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

/** The revocation list. */
export interface Revocations {
  has(agentId: string): boolean
  /** Revokes for good (the file is written before this returns). */
  add(agentId: string): void
}

/** Loads the list from `<dir>/revoked-agents` (none yet: empty). */
export function loadRevocations(dir: string): Revocations {
  const file = join(dir, 'revoked-agents')
  const revoked = new Set(existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [])
  return {
    has: (agentId) => revoked.has(agentId),
    add(agentId) {
      if (revoked.has(agentId)) return
      appendFileSync(file, `${agentId}\n`, { mode: 0o600 })
      revoked.add(agentId)
    },
  }
}
