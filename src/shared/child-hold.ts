/**
 * Whether a resident helper process (a shell, a copier, a launcher) keeps the agent's process
 * alive: while it works for someone, yes; while it waits idle, no. The child and its piped stdio
 * (sockets, which can be referenced or not) are all switched, or an idle one would hold the event
 * loop open through a pipe.
 */
import type { ChildProcess } from 'node:child_process'

type Refable = { ref?(): void; unref?(): void }

export function holdProcessOpen(child: ChildProcess, hold: boolean): void {
  for (const handle of [child, child.stdin, child.stdout, child.stderr] as (Refable | null)[]) {
    if (hold) handle?.ref?.()
    else handle?.unref?.()
  }
}
