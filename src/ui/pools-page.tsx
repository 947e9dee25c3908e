/** Warm pools: ready, in use, hits and misses per template; set min and max, or remove a pool. */
import { useState } from 'preact/hooks'
import { messageOf, type PoolInfo } from './api.js'
import { useApi } from './api-context.js'
import { ErrorLine } from './bits.js'
import { usePoll } from './use-poll.js'

/** The pools page. */
export function PoolsPage() {
  const api = useApi()
  const pools = usePoll(() => api.listPools(), 2000)
  const templates = usePoll(() => api.listTemplates(), 30_000)
  const [error, setError] = useState<string>()
  // Held here, so that the list of templates arriving (it replaces the options) keeps the choice made before it.
  const [choice, setChoice] = useState('debian')

  const set = async (template: string, min: number, max: number): Promise<void> => {
    setError(undefined)
    try {
      await api.setPool(template, min, max)
      pools.refresh()
    } catch (err) {
      setError(messageOf(err))
    }
  }
  const remove = async (template: string): Promise<void> => {
    setError(undefined)
    try {
      await api.deletePool(template)
      pools.refresh()
    } catch (err) {
      setError(messageOf(err))
    }
  }

  return (
    <section>
      <h1>Warm pools</h1>
      <p class="muted">Sandboxes started ahead of demand: a create that matches a pool is a hand-over (a hit); one that finds it empty starts cold (a miss).</p>
      <ErrorLine error={error ?? pools.error} />
      <table class="grid" id="pool-list">
        <thead>
          <tr>
            <th>Template</th>
            <th>Ready</th>
            <th>Starting</th>
            <th>In use</th>
            <th>Hits</th>
            <th>Misses</th>
            <th>Min / max</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {pools.value?.map((p) => <PoolRow key={p.template} pool={p} onSet={set} onRemove={remove} />)}
          {pools.value?.length === 0 && (
            <tr>
              <td colSpan={8} class="muted">
                No pools. Add one below.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <form
        class="card form-row"
        id="add-pool"
        onSubmit={(e) => {
          e.preventDefault()
          const f = new FormData(e.currentTarget)
          void set(String(f.get('template')), Number(f.get('min')), Number(f.get('max')))
        }}
      >
        <label>
          Template
          <select name="template" value={choice} onChange={(e) => setChoice(e.currentTarget.value)}>
            {(templates.value?.map((t) => t.name) ?? ['debian']).map((n) => (
              <option value={n}>{n}</option>
            ))}
          </select>
        </label>
        <label>
          Min
          <input name="min" type="number" min="0" max="256" value="1" required />
        </label>
        <label>
          Max
          <input name="max" type="number" min="1" max="256" value="2" required />
        </label>
        <button type="submit" class="primary">
          Set pool
        </button>
      </form>
    </section>
  )
}

function PoolRow({ pool: p, onSet, onRemove }: { pool: PoolInfo; onSet(t: string, min: number, max: number): Promise<void>; onRemove(t: string): Promise<void> }) {
  const [min, setMin] = useState(String(p.min))
  const [max, setMax] = useState(String(p.max))
  return (
    <tr data-pool={p.template}>
      <td>
        <strong>{p.template}</strong>
      </td>
      <td class="num" data-field="ready">{p.ready}</td>
      <td class="num" data-field="starting">{p.starting}</td>
      <td class="num" data-field="inUse">{p.inUse}</td>
      <td class="num" data-field="hits">{p.hits}</td>
      <td class="num" data-field="misses">{p.misses}</td>
      <td>
        <input class="narrow" type="number" min="0" max="256" value={min} onInput={(e) => setMin(e.currentTarget.value)} aria-label="min" /> /{' '}
        <input class="narrow" type="number" min="1" max="256" value={max} onInput={(e) => setMax(e.currentTarget.value)} aria-label="max" />
      </td>
      <td class="actions">
        <button onClick={() => void onSet(p.template, Number(min), Number(max))}>Save</button>
        <button class="danger" onClick={() => void onRemove(p.template)}>
          Remove
        </button>
      </td>
    </tr>
  )
}
