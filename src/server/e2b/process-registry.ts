/** What envd knows of a process that the agent does not: its tag, config, PTY, and whether it is a helper. */

import type { SandboxCatalog } from '../catalog.js'

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
  /** Bytes of each entry's strings, and of all. */
  sizes: Map<number, number>
  bytes: number
  helpers: Set<number>
}

/** Keeps the last few hundred entries per sandbox; older ones have ended long ago. */
const keptEntries = 512
/** And at most this much of their commands, arguments and env (a start may carry a megabyte of them). */
const keptBytes = 4 * 1024 * 1024

/** What an entry's strings weigh. */
const sizeOf = (e: ProcessEntry): number =>
  e.cmd.length + (e.tag?.length ?? 0) + e.args.reduce((n, a) => n + a.length, 0) + Object.entries(e.envs).reduce((n, [k, v]) => n + k.length + v.length, 0)

/**
 * Drops a sandbox's records once the catalog no longer has it, however it went (a kill, its
 * timeout, a destroy through /v1, a sandbox its agent no longer holds): every row's delete goes
 * through the catalog, which says so. Returns the stop.
 */
export function forgetGoneSandboxes(catalog: Pick<SandboxCatalog, 'watchStates'>, registry: ProcessRegistry): () => void {
  return catalog.watchStates((id, state) => {
    if (state === undefined) registry.drop(id)
  })
}

/**
 * An in-memory registry (lost on restart: listed processes then show their argv only). `known`
 * says whether a sandbox is still in the catalog: a record that comes in after its sandbox was
 * deleted (a command whose pid arrives after a kill) is not kept, since no delete will drop it.
 */
export function createProcessRegistry(known: (sandboxId: string) => boolean = () => true): ProcessRegistry {
  const sandboxes = new Map<string, SandboxProcesses>()
  const of = (id: string): SandboxProcesses | undefined => {
    let s = sandboxes.get(id)
    if (!s && known(id)) sandboxes.set(id, (s = { entries: new Map(), sizes: new Map(), bytes: 0, helpers: new Set() }))
    return s
  }
  const trim = <T>(set: { size: number; keys(): IterableIterator<T>; delete(k: T): boolean }): void => {
    while (set.size > keptEntries) set.delete(set.keys().next().value as T)
  }
  return {
    add(id, pid, entry) {
      const s = of(id)
      if (!s) return
      s.bytes -= s.sizes.get(pid) ?? 0
      const size = sizeOf(entry)
      s.entries.set(pid, entry)
      s.sizes.set(pid, size)
      s.bytes += size
      // The oldest go first: past the count, or past the bytes (never the one just added).
      while (s.entries.size > keptEntries || (s.bytes > keptBytes && s.entries.size > 1)) {
        const oldest = s.entries.keys().next().value as number
        s.entries.delete(oldest)
        s.bytes -= s.sizes.get(oldest) ?? 0
        s.sizes.delete(oldest)
      }
    },
    get: (id, pid) => sandboxes.get(id)?.entries.get(pid),
    pidOfTag(id, tag) {
      for (const [pid, entry] of sandboxes.get(id)?.entries ?? []) if (entry.tag === tag) return pid
      return undefined
    },
    hide(id, pid) {
      const s = of(id)
      if (!s) return
      s.helpers.add(pid)
      trim(s.helpers)
    },
    hidden: (id, pid) => sandboxes.get(id)?.helpers.has(pid) ?? false,
    drop: (id) => void sandboxes.delete(id),
  }
}
