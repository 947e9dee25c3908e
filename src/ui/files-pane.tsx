/** A sandbox's files: browse directories, download a file, upload files from the computer. */
import { useState } from 'preact/hooks'
import { messageOf, type EntryInfo } from './api.js'
import { useApi } from './api-context.js'
import { ErrorLine, formatBytes } from './bits.js'
import { usePoll } from './use-poll.js'

/** `dir` joined with one name. */
function join(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`
}

/** The parent of an absolute path ('/' for '/'). */
function parentOf(path: string): string {
  const at = path.lastIndexOf('/')
  return at <= 0 ? '/' : path.slice(0, at)
}

/** The files pane of a sandbox page. */
export function FilesPane({ sandboxId }: { sandboxId: string }) {
  const api = useApi()
  const [path, setPath] = useState('/root')
  const [typed, setTyped] = useState('/root')
  const [busy, setBusy] = useState<string>()
  const [error, setError] = useState<string>()
  const [done, setDone] = useState<string>()
  const list = usePoll(() => api.listDir(sandboxId, path), 5000, [sandboxId, path])

  const go = (to: string): void => {
    const clean = to.replace(/\/+$/, '') || '/'
    setPath(clean)
    setTyped(clean)
    setError(undefined)
  }

  const download = async (entry: EntryInfo): Promise<void> => {
    setBusy(entry.path)
    setError(undefined)
    try {
      const blob = await api.download(sandboxId, entry.path)
      const url = URL.createObjectURL(blob)
      const a = document.createElement('a')
      a.href = url
      a.download = entry.name
      document.body.append(a)
      a.click()
      a.remove()
      // The download has taken the blob once click() returns; free it on the next turn.
      setTimeout(() => URL.revokeObjectURL(url), 0)
      setDone(`downloaded ${entry.path} (${formatBytes(blob.size)})`)
    } catch (err) {
      setError(messageOf(err))
    } finally {
      setBusy(undefined)
    }
  }

  const upload = async (input: HTMLInputElement): Promise<void> => {
    const files = [...(input.files ?? [])]
    if (files.length === 0) return
    setError(undefined)
    try {
      for (const file of files) {
        setBusy(file.name)
        await api.upload(sandboxId, join(path, file.name), file)
      }
      setDone(`uploaded ${files.map((f) => join(path, f.name)).join(', ')}`)
      list.refresh()
    } catch (err) {
      setError(messageOf(err))
    } finally {
      setBusy(undefined)
      input.value = ''
    }
  }

  const entries = [...(list.value ?? [])].sort((a, b) => (a.type === 'dir') === (b.type === 'dir') ? a.name.localeCompare(b.name) : a.type === 'dir' ? -1 : 1)
  return (
    <div class="files-pane">
      <form
        class="toolbar"
        onSubmit={(e) => {
          e.preventDefault()
          go(typed)
        }}
      >
        <button type="button" name="up" disabled={path === '/'} onClick={() => go(parentOf(path))}>
          ↑ Up
        </button>
        <input class="grow mono" name="path" value={typed} onInput={(e) => setTyped(e.currentTarget.value)} aria-label="Directory" />
        <button type="submit">Go</button>
        <label class="button primary">
          Upload…
          <input type="file" name="upload" multiple hidden onChange={(e) => void upload(e.currentTarget)} />
        </label>
      </form>
      <ErrorLine error={error ?? list.error} />
      {busy && <p class="muted">working on {busy}…</p>}
      {done && !busy && <p class="ok" id="files-done">{done}</p>}
      <table class="grid" id="file-list">
        <thead>
          <tr>
            <th>Name</th>
            <th>Size</th>
            <th>Mode</th>
            <th>Modified</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {entries.map((e) => (
            <tr data-entry={e.name} data-type={e.type}>
              <td class="mono">
                {e.type === 'dir' ? (
                  <a href="#" onClick={(ev) => (ev.preventDefault(), go(e.path))}>
                    {e.name}/
                  </a>
                ) : (
                  e.name
                )}
                {e.type === 'symlink' && <span class="muted"> (link)</span>}
              </td>
              <td>{e.type === 'file' ? formatBytes(e.size) : ''}</td>
              <td class="mono small">{(e.mode & 0o7777).toString(8).padStart(4, '0')}</td>
              <td class="small">{new Date(e.modifiedAt).toLocaleString()}</td>
              <td class="actions">
                {e.type === 'file' && (
                  <button name="download" disabled={busy === e.path} onClick={() => void download(e)}>
                    Download
                  </button>
                )}
              </td>
            </tr>
          ))}
          {list.value?.length === 0 && (
            <tr>
              <td colSpan={5} class="muted">
                Empty directory.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  )
}
