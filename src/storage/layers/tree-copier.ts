/**
 * Copying a frozen sandbox's upper dir into a new layer without a process spawn per snapshot: a
 * spawn from the agent costs 10 to 20 ms on a small host, more than copying a small change. Resident
 * python3 copiers (tree-copier-script.ts), started once and kept, do the copy; `cp -a` does it
 * where python3 is missing, a copier dies, or a tree is too deep for one. They also make, limit and
 * delete the btrfs driver's subvolumes, which would otherwise cost a run of `btrfs` each (6 to 7 ms
 * a run, on a tree search's restore path).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { diskFullError, holdProcessOpen, linkSignal, SandstormError, throwIfAborted, type CallOptions } from '../../shared/index.js'
import { removeAll } from '../../shared/remove-all.js'
import { copyTree } from './copy-tree.js'
import { treeCopierScript } from './tree-copier-script.js'

/** The host's python3; a copier is started with no site packages and no environment lookups (-I -S). */
const python = '/usr/bin/python3'
/**
 * Copiers kept waiting between snapshots: 2, or as many as were ever busy at once (at most 8).
 * More start while snapshots of several sandboxes overlap, and a start costs tens of milliseconds
 * of CPU: a fork of 8 from a warm pool on btrfs (8 subvolume snapshots at once) took 142 / 160 ms
 * p50/p95 with 2 kept, 71 / 97 ms with 8. An idle copier holds about 6 MiB (PSS).
 */
const minIdle = 2
const mostIdle = 8
let busy = 0
let mostBusy = 0

/** A copier's answer to a request. */
type Reply = { ok: true } | { ok: false; errno: string; fallback: boolean }
/** How a request ended: the copier's reply, or the copier gone. */
type Answer = Reply | { died: string }

interface Copier {
  request(request: Record<string, unknown>): Promise<Answer>
  kill(): void
  setIdle(idle: boolean): void
}

const idle: Copier[] = []
/** Set once python3 could not be started: every copy goes to cp -a from then on. */
let unavailable = false

/**
 * Copies the frozen upper dir `src` to `dest` (which must not exist), as `copyTree` does: links
 * copied as links, never followed; whiteouts, FIFOs, owners, modes, setuid bits, xattrs (opaque
 * marks), hard links and times kept.
 */
export async function copyUpper(src: string, dest: string, options: CallOptions = {}): Promise<void> {
  const answer = await ask({ op: 'copy', src, dest }, options)
  if (answer?.ok) return
  if (!answer || answer.fallback) {
    // What a copier left is half a tree; cp -a starts again from nothing.
    await removeAll(dest)
    return copyTree(src, dest, options)
  }
  if (answer.errno === 'ENOSPC' || answer.errno === 'EDQUOT') throw diskFullError('copying a layer', answer.errno)
  if (answer.errno === 'ESTALE') throw new SandstormError('internal', 'copying a layer failed: expected the frozen sandbox\'s files to hold still, but an entry changed during the copy')
  throw new SandstormError('internal', `copying a layer failed: expected the copy to succeed, got ${answer.errno}`)
}

/**
 * Makes `dest` a snapshot of the btrfs subvolume `src` (read-only with `readonly`) through a
 * resident copier; false when none could (python3 missing, the ioctl refused), for the caller to
 * run `btrfs subvolume snapshot`, which says why.
 */
export async function snapshotSubvolume(src: string, dest: string, readonly: boolean, options: CallOptions = {}): Promise<boolean> {
  return (await ask({ op: 'snapshot', src, dest, readonly }, options))?.ok === true
}

/**
 * Sets an exclusive-bytes limit of `bytes` on the qgroup of the btrfs subvolume `path` through a
 * resident copier; false when none could, for the caller to run `btrfs qgroup limit -e`.
 */
export async function limitSubvolume(path: string, bytes: number, options: CallOptions = {}): Promise<boolean> {
  return (await ask({ op: 'limit', path, bytes }, options))?.ok === true
}

/** Deletes the btrfs subvolume `path` through a resident copier; false when none could, for the caller to run `btrfs subvolume delete`. */
export async function deleteSubvolume(path: string, options: CallOptions = {}): Promise<boolean> {
  return (await ask({ op: 'delete', path }, options))?.ok === true
}

/** Turns on simple quotas for the btrfs filesystem holding `path` through a resident copier; false when none could (the kernel has no simple quotas, or python3 is missing). */
export async function enableSimpleQuotas(path: string, options: CallOptions = {}): Promise<boolean> {
  return (await ask({ op: 'quota', path }, options))?.ok === true
}

/**
 * Removes from the layer at `dest` what the layer `upper` replaces rather than merges with, and
 * makes (opaque) each dir it lays over a file or a whiteout, for a copy of `upper` to fill
 * (squash.ts). Both trees are a sandbox's: names are bytes (two names that differ only in bytes
 * that are no UTF-8 are two entries, never one), and every entry is reached through its parent's
 * descriptor, never through a link.
 */
export async function clearReplaced(upper: string, dest: string, options: CallOptions = {}): Promise<void> {
  const answer = await ask({ op: 'clear', upper, dest }, options)
  if (answer?.ok) return
  if (!answer) throw new SandstormError('internal', 'squashing layers failed: expected the resident copier (python3) to run, and it could not')
  if (answer.errno === 'ENOSPC' || answer.errno === 'EDQUOT') throw diskFullError('squashing layers', answer.errno)
  const why = answer.errno === 'ELOOP' ? 'a tree too deep to walk' : answer.errno
  throw new SandstormError('internal', `squashing layers failed: expected to clear what the upper layer replaces, got ${why}`)
}

/** Runs one request on an idle copier (or a new one); null when no copier could answer it. */
async function ask(request: Record<string, unknown>, options: CallOptions): Promise<Reply | null> {
  const signal = linkSignal(options)
  throwIfAborted(signal)
  const copier = unavailable ? null : (idle.pop() ?? startCopier())
  if (!copier) return null
  copier.setIdle(false)
  mostBusy = Math.max(mostBusy, ++busy)
  const onAbort = () => copier.kill()
  signal?.addEventListener('abort', onAbort, { once: true })
  let answer: Answer
  try {
    answer = await copier.request(request)
  } finally {
    busy--
    signal?.removeEventListener('abort', onAbort)
  }
  throwIfAborted(signal)
  if ('died' in answer) return null
  release(copier)
  return answer
}

/** Starts a copier ahead of the first snapshot (python3 takes tens of milliseconds to start). */
export function warmCopier(): void {
  if (unavailable || idle.length > 0) return
  const copier = startCopier()
  if (copier) release(copier)
}

function release(copier: Copier): void {
  if (idle.length >= Math.min(mostIdle, Math.max(minIdle, mostBusy))) return copier.kill()
  copier.setIdle(true)
  idle.push(copier)
}

/** Starts a copier; null (and cp -a from then on) when python3 cannot be run here. */
function startCopier(): Copier | null {
  let child: ChildProcessWithoutNullStreams
  try {
    child = spawn(python, ['-I', '-S', '-c', treeCopierScript], { stdio: ['pipe', 'pipe', 'pipe'] })
  } catch {
    unavailable = true
    return null
  }
  let pending: ((answer: Answer) => void) | null = null
  let ended: string | null = null
  let buffered = ''
  let complaint = ''
  const end = (why: string) => {
    ended ??= why
    const index = idle.indexOf(copier)
    if (index >= 0) idle.splice(index, 1)
    pending?.({ died: why })
    pending = null
  }
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      const settle = pending
      pending = null
      try {
        settle?.(JSON.parse(line) as Answer)
      } catch {
        settle?.({ died: `an unreadable answer: ${line.slice(0, 200)}` })
      }
    }
  })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (complaint = (complaint + chunk).slice(-2000)))
  child.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'EACCES') unavailable = true
    end(err.message)
  })
  child.on('exit', (code, sig) => end(`exited (${sig ?? code})${complaint ? `: ${complaint.trim().split('\n').at(-1)}` : ''}`))
  // A pipe's end closes the copier's stdin if the agent dies: it never outlives the agent.
  child.stdin.on('error', () => undefined)
  const copier: Copier = {
    request(request) {
      if (ended) return Promise.resolve({ died: ended })
      return new Promise((resolve) => {
        pending = resolve
        child.stdin.write(`${JSON.stringify(request)}\n`)
      })
    },
    kill: () => void child.kill('SIGKILL'),
    // An idle copier keeps no process alive; a busy one keeps the event loop running until it answers.
    setIdle: (isIdle) => holdProcessOpen(child, !isIdle),
  }
  return copier
}
