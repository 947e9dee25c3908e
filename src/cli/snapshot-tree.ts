/** Drawing snapshots as the tree their `parentId`s make. */
import type { SnapshotInfo } from '@sandstorm/sdk'

/** Lines of the tree, roots first (a snapshot whose parent is gone counts as a root), oldest first. */
export function snapshotTreeLines(list: SnapshotInfo[]): string[] {
  const ids = new Set(list.map((s) => s.id))
  const children = new Map<string | null, SnapshotInfo[]>()
  for (const s of list) {
    const parent = s.parentId !== null && ids.has(s.parentId) ? s.parentId : null
    children.set(parent, [...(children.get(parent) ?? []), s])
  }
  const out: string[] = []
  const describe = (s: SnapshotInfo) => `${s.id}${s.label ? ` "${s.label}"` : ''} (${s.template}, from ${s.sandboxId})`
  const walk = (parent: string | null, prefix: string) => {
    const kids = children.get(parent) ?? []
    kids.forEach((s, i) => {
      const last = i === kids.length - 1
      out.push(parent === null ? describe(s) : `${prefix}${last ? '└── ' : '├── '}${describe(s)}`)
      walk(s.id, parent === null ? '' : `${prefix}${last ? '    ' : '│   '}`)
    })
  }
  walk(null, '')
  return out
}
