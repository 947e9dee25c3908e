/**
 * The search: best-first descent with backtracking over the patches of task.ts, the tests'
 * score as the reward. At each node every patch left is tried at once, each in its own fork of
 * the node's snapshot. One working sandbox then walks down the best child that raises the reward
 * and snapshots it; when a branch dead-ends (no patch below it raises the reward), the working
 * sandbox is restored to the parent's snapshot and the next child is tried.
 */
import { Sandbox } from '@sandstorm/sdk'
import { applyEdit, edits, score, type Edit } from './task.js'

/** One state of the module: the patch that led to it from its parent, and its reward. */
export interface SearchNode {
  name: string
  /** null for the root (the module as it came). */
  edit: Edit | null
  passed: number
  total: number
  /** Taken once the working sandbox descended into it. */
  snapshotId?: string
  /** How many forks scored its children (0 when it was never expanded). */
  scouts: number
  /** The working sandbox was restored to this node's snapshot to try another child. */
  restoredTo: boolean
  outcome?: 'solved' | 'dead end'
  children: SearchNode[]
}

/** What the search did, for the printout. */
export interface SearchResult {
  root: SearchNode
  solution: SearchNode | undefined
  forks: number
  snapshots: number
  restores: number
}

/** Options of `search`. */
export interface SearchOptions {
  /** Labels every fork carries, so that a cleanup finds them all. */
  labels: Record<string, string>
  /** The snapshot label of a node, so that a cleanup finds every snapshot. */
  snapshotLabel(node: SearchNode): string
  /** Stops between steps (a step in flight finishes, so that nothing is made unseen). */
  signal: AbortSignal
  log(line: string): void
}

/** Searches from the state of `work` for patches that make every test pass. */
export async function search(work: Sandbox, options: SearchOptions): Promise<SearchResult> {
  const { signal, log } = options
  const result: SearchResult = { root: node('n0', null, await score(work)), solution: undefined, forks: 0, snapshots: 0, restores: 0 }
  let named = 0
  /** The node whose state the working sandbox holds. */
  let at = result.root

  function node(name: string, edit: Edit | null, reward: { passed: number; total: number }): SearchNode {
    return { name, edit, ...reward, scouts: 0, restoredTo: false, children: [] }
  }

  async function snapshot(n: SearchNode): Promise<void> {
    n.snapshotId = (await work.snapshot({ label: options.snapshotLabel(n) })).id
    result.snapshots++
    log(`snapshot ${n.name} (${n.passed}/${n.total}) as ${n.snapshotId}`)
  }

  /** Scores each patch on a fork of `parent`'s snapshot, all at once, and removes the forks. */
  async function scout(parent: SearchNode, tries: Edit[]): Promise<SearchNode[]> {
    signal.throwIfAborted()
    const forks = await Sandbox.fork(parent.snapshotId!, { count: tries.length, labels: options.labels, network: 'none' })
    result.forks += forks.length
    parent.scouts = forks.length
    log(`fork ${forks.length} sandboxes from ${parent.snapshotId} (${parent.name}) to try ${tries.length} patches at once`)
    // Named before they run, so that the names follow the order of the patches.
    const names = tries.map(() => `n${++named}`)
    try {
      return await Promise.all(
        tries.map(async (edit, i) => {
          await applyEdit(forks[i]!, edit)
          return node(names[i]!, edit, await score(forks[i]!))
        }),
      )
    } finally {
      await Promise.all(forks.map((f) => f.kill()))
    }
  }

  /** Expands `parent` (the working sandbox is at it); resolves with a solved node below it, if any. */
  async function expand(parent: SearchNode, path: Edit[]): Promise<SearchNode | undefined> {
    // One patch per line: a line already patched on the way here is not patched again.
    const tries = edits.filter((e) => !path.some((p) => p.line === e.line))
    if (tries.length === 0) return undefined
    parent.children = await scout(parent, tries)
    const better = parent.children.filter((c) => c.passed > parent.passed).sort((a, b) => b.passed - a.passed)
    for (const child of better) {
      signal.throwIfAborted()
      if (at !== parent) {
        await work.restore(parent.snapshotId!)
        result.restores++
        parent.restoredTo = true
        log(`backtrack: restore ${work.sandboxId} to ${parent.snapshotId} (${parent.name})`)
        at = parent
      }
      await applyEdit(work, child.edit!)
      at = child
      await snapshot(child)
      if (child.passed === child.total) {
        child.outcome = 'solved'
        return child
      }
      const found = await expand(child, [...path, child.edit!])
      if (found) return found
      child.outcome = 'dead end'
      log(`dead end at ${child.name}: no patch below it raises ${child.passed}/${child.total}`)
    }
    return undefined
  }

  await snapshot(result.root)
  result.solution = result.root.passed === result.root.total ? result.root : await expand(result.root, [])
  return result
}

/** The explored tree, one node a line: name, patch, reward, snapshot, and what happened there. */
export function formatTree(root: SearchNode): string[] {
  const lines: string[] = []
  const walk = (n: SearchNode, prefix: string, branch: string) => {
    const marks = [
      n.snapshotId ?? '',
      n.scouts > 0 ? `forked ${n.scouts}` : '',
      n.restoredTo ? 'restored to' : '',
      n.outcome ?? '',
    ].filter(Boolean)
    const what = n.edit ? n.edit.to : '(the module as it came)'
    lines.push(`${prefix}${branch}${n.name} ${what}  ${n.passed}/${n.total}${marks.length ? `  [${marks.join(', ')}]` : ''}`)
    const below = prefix + (branch === '├─ ' ? '│  ' : branch === '└─ ' ? '   ' : '')
    n.children.forEach((c, i) => walk(c, below, i === n.children.length - 1 ? '└─ ' : '├─ '))
  }
  walk(root, '', '')
  return lines
}
