/** Templates: the list, and a build (from an image, or steps on a template) with its log live. */
import { useEffect, useRef, useState } from 'preact/hooks'
import { messageOf, type BuildRequest, type TemplateBuildEvent } from './api.js'
import { useApi } from './api-context.js'
import { ErrorLine, formatBytes, relative } from './bits.js'
import { usePoll } from './use-poll.js'

/** Text of a base64 chunk of output. */
function decode(base64: string): string {
  const binary = atob(base64)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return new TextDecoder().decode(bytes)
}

/** One build event as a line (or lines) of the log. */
export function logLine(ev: TemplateBuildEvent): string {
  switch (ev.type) {
    case 'step':
      return `${ev.index > 0 ? '\n' : ''}$ ${ev.cmd}${ev.cached ? '   (cached)' : ''}\n`
    case 'progress':
      return `${ev.message}\n`
    case 'stdout':
    case 'stderr':
      return decode(ev.data)
    case 'step_end':
      return `[step ${ev.index + 1} exited with code ${ev.exitCode}]\n`
    case 'done':
      return `\nbuilt ${ev.template.name} version ${ev.template.version}\n`
    case 'error':
      return `\nbuild failed (${ev.code}): ${ev.message}\n`
  }
}

/** How much of a build's log the page keeps (characters): every event copies the log, so a long build's would cost ever more. */
const maxLogChars = 1 << 20

/** `log` and `more`, cut to their last maxLogChars, from a line's start, after a line that says so. */
export function appendLog(log: string, more: string): string {
  const all = log + more
  if (all.length <= maxLogChars) return all
  const tail = all.slice(-maxLogChars)
  const lineStart = tail.indexOf('\n') + 1
  return `[earlier output dropped]\n${tail.slice(lineStart > 0 && lineStart < 4096 ? lineStart : 0)}`
}

/** The templates page. */
export function TemplatesPage() {
  const api = useApi()
  const list = usePoll(() => api.listTemplates(), 10_000)
  return (
    <section>
      <h1>Templates</h1>
      <ErrorLine error={list.error} />
      <table class="grid" id="template-list">
        <thead>
          <tr>
            <th>Name</th>
            <th>Version</th>
            <th>Source</th>
            <th>Size</th>
            <th>Defaults</th>
            <th>Built</th>
          </tr>
        </thead>
        <tbody>
          {list.value?.map((t) => (
            <tr data-template={t.name}>
              <td>
                <strong>{t.name}</strong>
                {t.description && <div class="muted small">{t.description}</div>}
              </td>
              <td>{t.version}</td>
              <td class="small">{t.source ? `${t.source.kind} ${t.source.reference ?? t.source.template ?? ''}` : t.baseTemplate ? `golden on ${t.baseTemplate}` : 'built'}</td>
              <td>{formatBytes(t.sizeBytes)}</td>
              <td class="small">
                {t.defaults.cpus} CPU · {t.defaults.memoryMiB} MiB
              </td>
              <td class="small">{relative(Date.parse(t.builtAt) - Date.now())}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <BuildForm templates={list.value?.map((t) => t.name) ?? []} onBuilt={list.refresh} />
    </section>
  )
}

/** Starts a build and shows its NDJSON log as it comes; leaving the page cancels it. */
function BuildForm({ templates, onBuilt }: { templates: string[]; onBuilt(): void }) {
  const api = useApi()
  const [kind, setKind] = useState<'steps' | 'image'>('steps')
  const [log, setLog] = useState('')
  const [state, setState] = useState<'idle' | 'building' | 'done' | 'failed'>('idle')
  const [error, setError] = useState<string>()
  const running = useRef<AbortController | undefined>(undefined)
  const pre = useRef<HTMLPreElement>(null)
  useEffect(() => () => running.current?.abort(), [])
  useEffect(() => {
    if (pre.current) pre.current.scrollTop = pre.current.scrollHeight
  }, [log])

  const submit = async (e: SubmitEvent): Promise<void> => {
    e.preventDefault()
    const form = new FormData(e.currentTarget as HTMLFormElement)
    const name = String(form.get('name') ?? '').trim()
    const req: BuildRequest =
      kind === 'image'
        ? { image: String(form.get('image') ?? '').trim() }
        : { from: String(form.get('from') ?? 'debian'), steps: String(form.get('steps') ?? '').split('\n').map((s) => s.trim()).filter(Boolean) }
    const controller = new AbortController()
    running.current = controller
    setLog('')
    setError(undefined)
    setState('building')
    let ok = false
    try {
      for await (const ev of api.buildTemplate(name, req, controller.signal)) {
        setLog((l) => appendLog(l, logLine(ev)))
        if (ev.type === 'done') ok = true
        if (ev.type === 'error') setError(ev.message)
      }
      setState(ok ? 'done' : 'failed')
      if (ok) onBuilt()
    } catch (err) {
      setError(messageOf(err))
      setState('failed')
    } finally {
      running.current = undefined
    }
  }

  return (
    <form class="card" id="build-template" onSubmit={(e) => void submit(e)}>
      <h2>Build a template</h2>
      <div class="form-row">
        <label>
          Name
          <input name="name" required placeholder="my-template" pattern="[a-z0-9][a-z0-9._\-]{0,62}" />
        </label>
        <label>
          From
          <select name="kind" value={kind} onChange={(e) => setKind(e.currentTarget.value as 'steps' | 'image')}>
            <option value="steps">steps on a template</option>
            <option value="image">a registry image</option>
          </select>
        </label>
        {kind === 'image' ? (
          <label class="grow">
            Image
            <input name="image" required placeholder="registry.example:5000/team/app:1.0" />
          </label>
        ) : (
          <label>
            Base template
            <select name="from">
              {(templates.length ? templates : ['debian']).map((n) => (
                <option value={n} selected={n === 'debian'}>
                  {n}
                </option>
              ))}
            </select>
          </label>
        )}
      </div>
      {kind === 'steps' && (
        <label class="block">
          Steps (one shell command a line, run as root)
          <textarea name="steps" rows={3} required placeholder="apt-get install -y jq" class="mono" />
        </label>
      )}
      <div class="toolbar">
        <button type="submit" class="primary" disabled={state === 'building'}>
          {state === 'building' ? 'Building…' : 'Build'}
        </button>
        {state === 'building' && (
          <button type="button" onClick={() => running.current?.abort()}>
            Cancel
          </button>
        )}
        <span class={`muted build-state-${state}`} id="build-state">
          {state === 'idle' ? '' : state}
        </span>
      </div>
      <ErrorLine error={error} />
      {state !== 'idle' && (
        <pre class="log" id="build-log" ref={pre}>
          {log}
        </pre>
      )}
    </form>
  )
}
