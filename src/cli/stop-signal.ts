/** Waiting for Ctrl-C or SIGTERM in a long-running command; a second signal exits at once. */

/** Resolves on the first SIGINT or SIGTERM. */
export function waitForStop(): Promise<void> {
  return new Promise<void>((resolve) => {
    let stopping = false
    const stop = (): void => {
      if (stopping) process.exit(130)
      stopping = true
      resolve()
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
}
