/** When a sandbox stops running for envd's streams: deleted (killed, timed out), paused or stopped, as the catalog says. */
import type { SandboxCatalog } from '../catalog.js'
import type { SandboxService } from '../sandbox-service.js'

/**
 * How long a stream whose process its sandbox's kill ended waits for the sandbox to be gone from
 * the catalog before it is cut, so that the SDK's `/health` probe right after hears 502. A destroy
 * takes well under this; one that fails leaves a sandbox whose commands cannot run.
 */
export const goneWaitMs = 30_000

/** Per-sandbox signals of leaving `running`. */
export interface SandboxExits {
  /** Fires once the sandbox leaves `running`; aborted already when it does not run now. */
  signalFor(sandboxId: string): AbortSignal
  /** Stops listening to the catalog; streams still open end with the server's shutdown signal. */
  close(): void
}

/** Signals driven by the catalog's state changes, one controller per sandbox that someone follows. */
export function createSandboxExits(catalog: SandboxCatalog): SandboxExits {
  const controllers = new Map<string, AbortController>()
  const stop = catalog.watchStates((id, state) => {
    if (state === 'running') return
    controllers.get(id)?.abort(new Error(`sandbox "${id}" is ${state ?? 'gone'}`))
    controllers.delete(id)
  })
  return {
    signalFor(id) {
      const record = catalog.get(id)
      if (record?.state !== 'running') return AbortSignal.abort(new Error(`sandbox "${id}" is not running`))
      let controller = controllers.get(id)
      if (!controller) controllers.set(id, (controller = new AbortController()))
      return controller.signal
    },
    close() {
      stop()
      controllers.clear()
    },
  }
}

/** Whether the sandbox is on its way out: being killed (its commands end before it leaves the catalog), gone, or past its timeout. */
export function sandboxDying(id: string, sandboxes: SandboxService): boolean {
  try {
    return sandboxes.destroying(id) || sandboxes.requireStarted(id).expiresAtMs <= Date.now()
  } catch {
    return true
  }
}

/** Resolves when `signal` fires, or after `ms` at the latest. */
export function untilAborted(signal: AbortSignal, ms: number): Promise<void> {
  if (signal.aborted) return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}
