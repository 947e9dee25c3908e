/** One sandbox: its details, and tabs for a terminal, its files and snapshots. */
import { useState } from 'preact/hooks'
import { messageOf } from './api.js'
import { useApi } from './api-context.js'
import { Ago, ErrorLine, Labels, StateBadge } from './bits.js'
import { FilesPane } from './files-pane.js'
import { navigate, onLinkClick } from './router.js'
import { SnapshotTree } from './snapshot-tree.js'
import { TerminalPane } from './terminal-pane.js'
import { usePoll } from './use-poll.js'

const tabs = [
  ['terminal', 'Terminal'],
  ['files', 'Files'],
  ['snapshots', 'Snapshots'],
] as const

/** The page of sandbox `id`, on tab `tab`. */
export function SandboxPage({ id, tab }: { id: string; tab: string }) {
  const api = useApi()
  const info = usePoll(() => api.getSandbox(id), 2000, [id])
  const [error, setError] = useState<string>()
  const [snapVersion, setSnapVersion] = useState(0)
  const [label, setLabel] = useState('')
  const [busy, setBusy] = useState(false)
  const s = info.value
  const current = tabs.some(([t]) => t === tab) ? tab : 'terminal'

  const run = async (what: () => Promise<unknown>): Promise<void> => {
    setBusy(true)
    setError(undefined)
    try {
      await what()
    } catch (err) {
      setError(messageOf(err))
    } finally {
      setBusy(false)
    }
  }

  return (
    <section>
      <p class="crumbs">
        <a href="/ui/sandboxes" onClick={onLinkClick}>
          Sandboxes
        </a>{' '}
        / <span class="mono">{id}</span>
      </p>
      <ErrorLine error={error ?? info.error} />
      {s && (
        <div class="card details" id="sandbox-details" data-state={s.state}>
          <div>
            <StateBadge state={s.state} /> <strong>{s.template}</strong> on {s.runtime}
          </div>
          <div class="muted small">
            {s.cpus} CPU · {s.memoryMiB} MiB · disk {s.diskMiB} MiB · created <Ago iso={s.createdAt} /> · expires <Ago iso={s.expiresAt} />
          </div>
          <Labels labels={s.labels} />
          <span class="grow" />
          <button
            class="danger"
            name="kill"
            disabled={busy}
            onClick={() =>
              void run(async () => {
                await api.killSandbox(id)
                navigate('/sandboxes')
              })
            }
          >
            Kill sandbox
          </button>
        </div>
      )}
      <nav class="tabs">
        {tabs.map(([t, title]) => (
          <a href={`/ui/sandboxes/${id}/${t}`} onClick={onLinkClick} class={t === current ? 'active' : ''} data-tab={t}>
            {title}
          </a>
        ))}
      </nav>
      <div class="card pane">
        {s?.state !== 'running' && current !== 'snapshots' ? (
          <p class="muted">{s ? `The sandbox is ${s.state}.` : 'Loading…'}</p>
        ) : current === 'terminal' ? (
          <TerminalPane sandboxId={id} />
        ) : current === 'files' ? (
          <FilesPane sandboxId={id} />
        ) : (
          <>
            <form
              class="toolbar"
              onSubmit={(e) => {
                e.preventDefault()
                void run(async () => {
                  await api.takeSnapshot(id, label || undefined)
                  setLabel('')
                  setSnapVersion((v) => v + 1)
                })
              }}
            >
              <input name="snapshot-label" placeholder="label (optional)" value={label} onInput={(e) => setLabel(e.currentTarget.value)} />
              <button type="submit" class="primary" name="take-snapshot" disabled={busy || s?.state !== 'running'}>
                {busy ? 'Working…' : 'Take snapshot'}
              </button>
            </form>
            <SnapshotTree sandboxId={id} version={snapVersion} onRestored={info.refresh} />
          </>
        )}
      </div>
    </section>
  )
}
