/**
 * Stat and listings of a sandbox's files, bounded. The helper is the sandbox's own perl, which its
 * code may replace: what it prints is cut at a count of entries (and of bytes) as it comes, so a
 * helper that prints millions of tiny records never becomes millions of objects in the server.
 */
import type { AgentApi } from '../../agent/index.js'
import { maxHelperStdoutBytes, SandstormError } from '../../shared/index.js'
import { entryFields, listArgv, parseEntries } from './entry-info.js'
import type { EntryInit } from './entry-info.js'
import type { HelperSlots } from './helper-slots.js'
import { runChecked } from './sandbox-run.js'

/** The most entries one listing answers (a listing of more fails: ask for a shallower one). */
export const maxListedEntries = 100_000
/** What the helper of a stat may print: one entry, whose path (4 KiB) and metadata fit many times over. */
export const maxStatBytes = 1024 * 1024

/** Options of statEntry and listEntries. */
export interface ListingOptions {
  /** Turns per sandbox: a listing's answer is held whole until parsed. */
  slots: HelperSlots
  signal?: AbortSignal
  /** Called with the helper's pid (to hide it from `commands.list`). */
  onPid?(pid: number): void
}

/** The entry of `path` itself, or undefined when the helper printed none. */
export async function statEntry(agent: AgentApi, sandboxId: string, op: string, path: string, options: ListingOptions): Promise<EntryInit | undefined> {
  const tooMany = (): SandstormError => new SandstormError('failed_precondition', `${op} ${path}: the helper printed more than one entry (is /usr/bin/perl in the sandbox its own?)`)
  const output = await options.slots.run(
    sandboxId,
    () => runChecked(agent, sandboxId, op, path, listArgv(path, 0, 0), { signal: options.signal, onPid: options.onPid, maxStdoutBytes: maxStatBytes, onStdout: entryCounter(1, tooMany) }),
    { signal: options.signal },
  )
  return parseEntries(output)[0]
}

/** The entries under the directory `path`, depths 1 to `maxDepth`. */
export async function listEntries(agent: AgentApi, sandboxId: string, path: string, maxDepth: number, options: ListingOptions): Promise<EntryInit[]> {
  const tooMany = (): SandstormError => new SandstormError('resource_exhausted', `more than ${maxListedEntries} entries: ask for less (a shallower listing)`)
  const output = await options.slots.run(
    sandboxId,
    () => runChecked(agent, sandboxId, 'list', path, listArgv(path, 1, maxDepth), { signal: options.signal, onPid: options.onPid, maxStdoutBytes: maxHelperStdoutBytes, onStdout: entryCounter(maxListedEntries, tooMany) }),
    { signal: options.signal },
  )
  return parseEntries(output)
}

/** Counts the NUL-ended fields of the helper's output as it comes; throws once more than `maxEntries` records have begun. */
function entryCounter(maxEntries: number, tooMany: () => SandstormError): (chunk: Buffer) => void {
  let fields = 0
  return (chunk) => {
    for (let at = chunk.indexOf(0); at !== -1; at = chunk.indexOf(0, at + 1)) fields++
    if (fields > maxEntries * entryFields) throw tooMany()
  }
}
