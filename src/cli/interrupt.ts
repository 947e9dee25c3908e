/** Ctrl-C and SIGTERM as one AbortSignal, so that commands clean up (kill, destroy) before exiting. */

let controller: AbortController | undefined

/**
 * A signal that fires on the first SIGINT or SIGTERM. A second one exits at once with 130, for
 * when the cleanup itself hangs.
 */
export function interruptSignal(): AbortSignal {
  if (controller) return controller.signal
  const c = new AbortController()
  controller = c
  const onSignal = (name: NodeJS.Signals): void => {
    if (c.signal.aborted) process.exit(130)
    c.abort(new Error(`interrupted by ${name}`))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  return c.signal
}
