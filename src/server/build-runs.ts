/**
 * The image builds running on this server, by template name. Each runs under a deadline, so that
 * a step that never ends (`RUN sleep infinity`) does not hold its build sandbox and its template
 * name until a restart; and the builds of a name can be stopped (the template deleted, a newer
 * E2B build of it requested), which waits until they have ended and removed what they made.
 */
import { SandstormError } from '../shared/index.js'
import { maxDelayMs } from './expiry-timers.js'

/** The server's build deadline unless it is given one (`--build-timeout`). */
export const defaultBuildTimeoutMs = 60 * 60_000

/** Options of createBuildRuns. */
export interface BuildRunsOptions {
  /** A build running longer is aborted with deadline_exceeded. */
  timeoutMs: number
}

/** The running builds. */
export interface BuildRuns {
  /**
   * Runs `work` for template `name` with a signal that fires on `signal`, on the deadline or on
   * `stop(name)`; its reason is a SandstormError that says which (a caller's own reason as it came).
   */
  run<T>(name: string, signal: AbortSignal, work: (signal: AbortSignal) => Promise<T>): Promise<T>
  /** Aborts every build of `name` with `reason` and resolves, with how many there were, once they have all ended. */
  stop(name: string, reason: SandstormError): Promise<number>
}

interface Running {
  controller: AbortController
  ended: Promise<unknown>
}

/** Creates the registry of running builds. */
export function createBuildRuns(options: BuildRunsOptions): BuildRuns {
  const byName = new Map<string, Set<Running>>()

  async function run<T>(name: string, signal: AbortSignal, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController()
    const timer = setTimeout(() => {
      controller.abort(new SandstormError('deadline_exceeded', `build of template "${name}" ran past the server's build deadline of ${options.timeoutMs} ms (--build-timeout): it was stopped and nothing of it kept`))
    }, Math.min(options.timeoutMs, maxDelayMs))
    const ended = work(AbortSignal.any([signal, controller.signal]))
    const entry: Running = { controller, ended: ended.catch(() => undefined) }
    const of = byName.get(name) ?? new Set<Running>()
    byName.set(name, of.add(entry))
    try {
      return await ended
    } finally {
      clearTimeout(timer)
      of.delete(entry)
      if (of.size === 0 && byName.get(name) === of) byName.delete(name)
    }
  }

  async function stop(name: string, reason: SandstormError): Promise<number> {
    const running = [...(byName.get(name) ?? [])]
    for (const r of running) r.controller.abort(reason)
    await Promise.all(running.map((r) => r.ended))
    return running.length
  }

  return { run, stop }
}
