/** What envd knows of a process that the agent does not: its tag, config, PTY, and whether it is a helper. */

/** A started process as envd lists it. */
export interface ProcessEntry {
  cmd: string
  args: string[]
  envs: Record<string, string>
  tag?: string
  /** Input goes through the PTY helper's framing. */
  pty: boolean
}

/** Per-sandbox bookkeeping of envd processes. */
export interface ProcessRegistry {
  add(sandboxId: string, pid: number, entry: ProcessEntry): void
  get(sandboxId: string, pid: number): ProcessEntry | undefined
  pidOfTag(sandboxId: string, tag: string): number | undefined
  /** Marks a pid as Sandstorm's own helper (file ops, watchers): never listed. */
  hide(sandboxId: string, pid: number): void
  hidden(sandboxId: string, pid: number): boolean
  /** Forgets a sandbox (killed). */
  drop(sandboxId: string): void
}

interface SandboxProcesses {
  entries: Map<number, ProcessEntry>
  helpers: Set<number>
}

/** Keeps the last few hundred entries per sandbox; older ones have ended long ago. */
const keptEntries = 512

/** An in-memory registry (lost on restart: listed processes then show their argv only). */
export function createProcessRegistry(): ProcessRegistry {
  const sandboxes = new Map<string, SandboxProcesses>()
  const of = (id: string): SandboxProcesses => {
    let s = sandboxes.get(id)
    if (!s) sandboxes.set(id, (s = { entries: new Map(), helpers: new Set() }))
    return s
  }
  const trim = <T>(set: { size: number; keys(): IterableIterator<T>; delete(k: T): boolean }): void => {
    while (set.size > keptEntries) set.delete(set.keys().next().value as T)
  }
  return {
    add(id, pid, entry) {
      const s = of(id)
      s.entries.set(pid, entry)
      trim(s.entries)
    },
    get: (id, pid) => sandboxes.get(id)?.entries.get(pid),
    pidOfTag(id, tag) {
      for (const [pid, entry] of sandboxes.get(id)?.entries ?? []) if (entry.tag === tag) return pid
      return undefined
    },
    hide(id, pid) {
      const s = of(id)
      s.helpers.add(pid)
      trim(s.helpers)
    },
    hidden: (id, pid) => sandboxes.get(id)?.helpers.has(pid) ?? false,
    drop: (id) => void sandboxes.delete(id),
  }
}
