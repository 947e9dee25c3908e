/** Sandboxes: the live list (state, labels, CPU and memory lines), create, and kill. */
import { useState } from 'preact/hooks'
import { messageOf, type SandboxInfo } from './api.js'
import { useApi } from './api-context.js'
import { Ago, ErrorLine, formatBytes, Labels, StateBadge } from './bits.js'
import { onLinkClick } from './router.js'
import { Sparkline } from './sparkline.js'
import { usePoll } from './use-poll.js'

/** How often the list is read again. */
const listEveryMs = 1500
/** How far back the sparklines reach. */
const sparkWindowMs = 5 * 60_000

/** The sandboxes page. */
export function SandboxesPage() {
  const api = useApi()
  const [filter, setFilter] = useState('')
  const labels = filter
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter((s) => s.includes('='))
  const list = usePoll(() => api.listSandboxes(labels), listEveryMs, [labels.join('&')])
  const shown = list.value

  return (
    <section>
      <h1>Sandboxes</h1>
      <CreateForm onCreated={list.refresh} />
      <div class="toolbar">
        <label>
          Filter by labels{' '}
          <input name="label-filter" placeholder="team=ml env=dev" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
        </label>
        <span class="muted">{shown ? `${shown.length} sandbox${shown.length === 1 ? '' : 'es'}` : 'loading…'}</span>
      </div>
      <ErrorLine error={list.error} />
      <table class="grid" id="sandbox-list">
        <thead>
          <tr>
            <th>Sandbox</th>
            <th>State</th>
            <th>Template</th>
            <th>Labels</th>
            <th>CPU</th>
            <th>Memory</th>
            <th>Expires</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {shown?.map((s) => <SandboxRow key={s.id} sandbox={s} onKilled={list.refresh} />)}
          {shown?.length === 0 && (
            <tr>
              <td colSpan={8} class="muted">
                No sandboxes{labels.length ? ' with these labels' : ''}. Create one above.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </section>
  )
}

/** One row; its sparklines read the sandbox's metrics while it runs. */
function SandboxRow({ sandbox: s, onKilled }: { sandbox: SandboxInfo; onKilled(): void }) {
  const api = useApi()
  const running = s.state === 'running'
  const metrics = usePoll(() => (running ? api.metrics(s.id, Date.now() - sparkWindowMs) : Promise.resolve([])), 2000, [s.id, running])
  const samples = metrics.value ?? []
  const last = samples.at(-1)
  const [confirming, setConfirming] = useState(false)
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string>()

  const kill = async (): Promise<void> => {
    if (!confirming) return setConfirming(true)
    setBusy(true)
    try {
      await api.killSandbox(s.id)
      onKilled()
    } catch (err) {
      setError(messageOf(err))
    } finally {
      setBusy(false)
      setConfirming(false)
    }
  }

  return (
    <tr data-sandbox={s.id} data-state={s.state}>
      <td>
        <a href={`/ui/sandboxes/${s.id}`} onClick={onLinkClick} class="mono">
          {s.id}
        </a>
        <div class="muted small">
          {s.runtime} · {s.cpus} CPU · {s.memoryMiB} MiB
        </div>
      </td>
      <td>
        <StateBadge state={s.state} />
      </td>
      <td>{s.template}</td>
      <td>
        <Labels labels={s.labels} />
      </td>
      <td>
        <Sparkline kind="cpu" values={samples.map((m) => m.cpuUsedPct)} max={100} label={last ? `${last.cpuUsedPct.toFixed(0)}%` : '–'} />
      </td>
      <td>
        <Sparkline
          kind="memory"
          values={samples.map((m) => m.memoryUsedBytes)}
          max={last?.memoryLimitBytes ?? 1}
          label={last ? formatBytes(last.memoryUsedBytes) : '–'}
        />
      </td>
      <td class="small">{running ? <Ago iso={s.expiresAt} /> : '–'}</td>
      <td class="actions">
        {error && <span class="error small">{error}</span>}
        <button class={confirming ? 'danger' : ''} name="kill" disabled={busy} onClick={() => void kill()} onBlur={() => setConfirming(false)}>
          {confirming ? 'Really kill?' : 'Kill'}
        </button>
      </td>
    </tr>
  )
}

/** Parses "a=1, b=2" (or one per line) into labels; throws naming the bad entry. */
export function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const part of text.split(/[,\n]+/).map((p) => p.trim()).filter(Boolean)) {
    const at = part.indexOf('=')
    if (at <= 0) throw new Error(`labels: expected key=value pairs separated by commas, got "${part}"`)
    labels[part.slice(0, at).trim()] = part.slice(at + 1).trim()
  }
  return labels
}

/** The create form: template, runtime, timeout and labels. */
function CreateForm({ onCreated }: { onCreated(): void }) {
  const api = useApi()
  const templates = usePoll(() => api.listTemplates(), 30_000)
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string>()
  const [created, setCreated] = useState<string>()

  const submit = async (e: SubmitEvent): Promise<void> => {
    e.preventDefault()
    const form = new FormData(e.currentTarget as HTMLFormElement)
    setError(undefined)
    setCreated(undefined)
    try {
      const timeoutMin = Number(form.get('timeout') || 0)
      const runtime = String(form.get('runtime') ?? '')
      const labels = parseLabels(String(form.get('labels') ?? ''))
      setBusy(true)
      const info = await api.createSandbox({
        template: String(form.get('template') || 'debian'),
        ...(runtime ? { runtime } : {}),
        ...(timeoutMin > 0 ? { timeoutMs: Math.round(timeoutMin * 60_000) } : {}),
        ...(Object.keys(labels).length ? { labels } : {}),
      })
      setCreated(info.id)
      onCreated()
    } catch (err) {
      setError(messageOf(err))
    } finally {
      setBusy(false)
    }
  }

  const names = templates.value?.map((t) => t.name) ?? ['debian']
  return (
    <form class="card form-row" id="create-sandbox" onSubmit={(e) => void submit(e)}>
      <label>
        Template
        <select name="template">
          {names.map((n) => (
            <option value={n} selected={n === 'debian'}>
              {n}
            </option>
          ))}
        </select>
      </label>
      <label>
        Runtime
        <select name="runtime">
          <option value="">default</option>
          <option value="runc">runc</option>
          <option value="qemu">qemu</option>
        </select>
      </label>
      <label>
        Timeout (min)
        <input name="timeout" type="number" min="0" step="any" placeholder="server default" />
      </label>
      <label class="grow">
        Labels
        <input name="labels" placeholder="team=ml, env=dev" />
      </label>
      <button type="submit" class="primary" disabled={busy}>
        {busy ? 'Creating…' : 'Create sandbox'}
      </button>
      {error && <p class="error wide">{error}</p>}
      {created && (
        <p class="ok wide">
          Created{' '}
          <a href={`/ui/sandboxes/${created}`} onClick={onLinkClick} class="mono">
            {created}
          </a>
        </p>
      )}
    </form>
  )
}
