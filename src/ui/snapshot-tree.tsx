/** Every snapshot drawn as the tree that `parentId` makes, with fork (and restore) on each node. */
import { useState } from 'preact/hooks'
import { messageOf, type SnapshotInfo } from './api.js'
import { useApi } from './api-context.js'
import { ErrorLine, relative } from './bits.js'
import { onLinkClick } from './router.js'
import { usePoll } from './use-poll.js'

/** Props of SnapshotTree. */
export interface SnapshotTreeProps {
  /** Offer "restore" onto this sandbox, and mark the snapshots taken of it. */
  sandboxId?: string
  /** Called after a restore, so the page can read the sandbox again. */
  onRestored?(): void
  /** Bumped by the page when it took a snapshot, to read the list again. */
  version?: number
}

/** Children of each snapshot id ('' for the roots: no parent, or a parent no longer listed). */
function childrenOf(snapshots: SnapshotInfo[]): Map<string, SnapshotInfo[]> {
  const ids = new Set(snapshots.map((s) => s.id))
  const children = new Map<string, SnapshotInfo[]>()
  const sorted = [...snapshots].sort((a, b) => a.createdAt.localeCompare(b.createdAt))
  for (const s of sorted) {
    const parent = s.parentId && ids.has(s.parentId) ? s.parentId : ''
    children.set(parent, [...(children.get(parent) ?? []), s])
  }
  return children
}

/** The snapshot tree. */
export function SnapshotTree({ sandboxId, onRestored, version = 0 }: SnapshotTreeProps) {
  const api = useApi()
  const list = usePoll(() => api.listSnapshots(), 5000, [version])
  const [busy, setBusy] = useState<string>()
  const [error, setError] = useState<string>()
  const [result, setResult] = useState<{ text: string; sandboxId?: string }>()

  const act = async (what: 'fork' | 'restore', snap: SnapshotInfo): Promise<void> => {
    setBusy(snap.id)
    setError(undefined)
    setResult(undefined)
    try {
      if (what === 'fork') {
        const [made] = await api.fork(snap.id)
        setResult({ text: `Forked ${snap.id} into`, sandboxId: made?.id })
      } else if (sandboxId) {
        await api.restore(sandboxId, snap.id)
        setResult({ text: `Restored ${sandboxId} to ${snap.id}` })
        onRestored?.()
      }
    } catch (err) {
      setError(messageOf(err))
    } finally {
      setBusy(undefined)
    }
  }

  const children = list.value ? childrenOf(list.value) : undefined
  const branch = (parent: string) => (
    <ul class="tree">
      {(children?.get(parent) ?? []).map((s) => (
        <li>
          <div class={`node${s.sandboxId === sandboxId ? ' mine' : ''}`} data-snapshot={s.id} data-parent={s.parentId ?? ''}>
            <span class="mono">{s.id}</span>
            {s.label && <span class="chip">{s.label}</span>}
            <span class="muted small">
              of {s.sandboxId} · {s.template} · {s.driver} depth {s.depth} · {relative(Date.parse(s.createdAt) - Date.now())}
            </span>
            <span class="grow" />
            <button name="fork" disabled={busy !== undefined} onClick={() => void act('fork', s)}>
              Fork
            </button>
            {sandboxId && (
              <button name="restore" disabled={busy !== undefined} onClick={() => void act('restore', s)}>
                Restore here
              </button>
            )}
          </div>
          {children?.has(s.id) && branch(s.id)}
        </li>
      ))}
    </ul>
  )

  return (
    <div class="snapshot-tree" id="snapshot-tree">
      <ErrorLine error={error ?? list.error} />
      {busy && <p class="muted">working on {busy}…</p>}
      {result && (
        <p class="ok" id="snapshot-result">
          {result.text}{' '}
          {result.sandboxId && (
            <a href={`/ui/sandboxes/${result.sandboxId}`} onClick={onLinkClick} class="mono">
              {result.sandboxId}
            </a>
          )}
        </p>
      )}
      {list.value?.length === 0 ? <p class="muted">No snapshots yet.</p> : branch('')}
    </div>
  )
}
