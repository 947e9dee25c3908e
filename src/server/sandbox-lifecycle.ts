/** What a sandbox does when its timeout comes (E2B's `lifecycle`): be killed, or pause and maybe wake on traffic. */
import { limits } from '../shared/index.js'

/** A sandbox's policy at its timeout, as the catalog keeps it. */
export interface SandboxLifecycle {
  /** 'kill' destroys it at its timeout; 'pause' pauses it instead (kept for `pausedRetentionMs`). */
  onTimeout: 'kill' | 'pause'
  /** A paused sandbox resumes on traffic to one of its ports or on an envd call. Only with onTimeout 'pause'. */
  autoResume: boolean
  /** The lifetime a resume by traffic gives it again; when absent, the server's default. */
  timeoutMs?: number
  /** While a paused machine (qemu) is written to disk and its VM stopped: the machine snapshot it comes back from. */
  hibernatedAs?: string
  /** Every machine snapshot it was written to (it stands on them); removed, newest first, when it is destroyed. */
  machineSaves?: string[]
}

/** The policy of a sandbox that names none: it is killed at its timeout. */
export const killAtTimeout: SandboxLifecycle = { onTimeout: 'kill', autoResume: false }

/** How long a paused sandbox is kept before it is removed: the longest lifetime Sandstorm allows (as E2B keeps paused ones). */
export const pausedRetentionMs = limits.maxTimeoutMs
