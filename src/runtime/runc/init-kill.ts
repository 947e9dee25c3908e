import { setTimeout as sleep } from 'node:timers/promises'
import { startTicksOf } from '../../shared/index.js'
import type { InitProcess } from './runc-cli.js'

/** How often a killed init is looked at until it is dead; the kernel takes about a millisecond. */
const pollMs = 1

/**
 * Whether a container's init still runs, decided as runc decides "stopped": the pid is gone, is a
 * zombie, or now belongs to another process (a different start time).
 */
export function initAlive(init: InitProcess): boolean {
  return startTicksOf(init.pid) === init.startTicks
}

/**
 * SIGKILLs a container's init and resolves once it is dead, or false after `waitMs`. The init is
 * PID 1 of the sandbox's pid namespace, so the kernel kills every other process of the sandbox
 * and reaps them before the init itself turns into a zombie. `thaw` runs right after the signal:
 * a frozen (paused) process only dies once thawed.
 *
 * Why not `runc delete --force` alone: runc 1.1 sends the signal, then sleeps 100 ms between
 * checks, so every destroy of a running sandbox took over 100 ms. Why not `runc kill` and
 * `runc state`: each run of runc costs milliseconds of CPU, taken from the command that runs next.
 * There is no event for another process's death without pidfds, which Node lacks: the stat file
 * is read every millisecond instead, a few microseconds of CPU each.
 */
export async function killInit(init: InitProcess, thaw: () => Promise<unknown>, waitMs = 10_000): Promise<boolean> {
  if (!initAlive(init)) return true
  try {
    process.kill(init.pid, 'SIGKILL')
  } catch {
    return true // gone between the check and the signal
  }
  await thaw().catch(() => undefined)
  const deadline = Date.now() + waitMs
  while (initAlive(init)) {
    if (Date.now() > deadline) return false
    await sleep(pollMs)
  }
  return true
}
