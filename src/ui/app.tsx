/** The console: the sign-in until a key is accepted, then the pages under one navigation bar. */
import { useMemo, useState } from 'preact/hooks'
import { createConsoleApi, forgetKey, storedKey, storeKey } from './api.js'
import { ApiContext } from './api-context.js'
import { Logo } from './bits.js'
import { AgentsPage } from './agents-page.js'
import { PoolsPage } from './pools-page.js'
import { navigate, onLinkClick, usePath } from './router.js'
import { SandboxPage } from './sandbox-page.js'
import { SandboxesPage } from './sandboxes-page.js'
import { SignIn } from './sign-in.js'
import { SnapshotTree } from './snapshot-tree.js'
import { TemplatesPage } from './templates-page.js'

const sections = [
  ['/sandboxes', 'Sandboxes'],
  ['/snapshots', 'Snapshots'],
  ['/templates', 'Templates'],
  ['/pools', 'Pools'],
  ['/agents', 'Agents'],
] as const

/** The whole app. */
export function App() {
  const [key, setKey] = useState(storedKey)
  const [notice, setNotice] = useState<string>()
  const path = usePath()
  const api = useMemo(
    () =>
      key
        ? createConsoleApi(key, (err) => {
            // The key was refused (revoked, or the server's key changed): back to the sign-in.
            forgetKey()
            setNotice(`Signed out: the server refused the key (${err.message}).`)
            setKey(null)
          })
        : null,
    [key],
  )

  if (!api) {
    return (
      <SignIn
        notice={notice}
        onSignedIn={(k) => {
          storeKey(k)
          setNotice(undefined)
          setKey(k)
        }}
      />
    )
  }

  return (
    <ApiContext.Provider value={api}>
      <header class="top">
        <a class="brand" href="/ui/sandboxes" onClick={onLinkClick}>
          <Logo /> Sandstorm
        </a>
        <nav>
          {sections.map(([p, title]) => (
            <a href={`/ui${p}`} onClick={onLinkClick} class={path.startsWith(p) ? 'active' : ''}>
              {title}
            </a>
          ))}
        </nav>
        <span class="grow" />
        <button
          name="sign-out"
          onClick={() => {
            forgetKey()
            setKey(null)
            navigate('/')
          }}
        >
          Sign out
        </button>
      </header>
      <main class="page">
        <Page path={path} />
      </main>
    </ApiContext.Provider>
  )
}

function Page({ path }: { path: string }) {
  const sandbox = /^\/sandboxes\/([^/]+)(?:\/([^/]+))?\/?$/.exec(path)
  if (sandbox) return <SandboxPage id={decodeURIComponent(sandbox[1]!)} tab={sandbox[2] ?? 'terminal'} />
  if (path.startsWith('/snapshots'))
    return (
      <section>
        <h1>Snapshots</h1>
        <p class="muted">Every snapshot, drawn as the tree of the sandboxes they were taken of. Fork one to start a new sandbox from it.</p>
        <div class="card">
          <SnapshotTree />
        </div>
      </section>
    )
  if (path.startsWith('/templates')) return <TemplatesPage />
  if (path.startsWith('/pools')) return <PoolsPage />
  if (path.startsWith('/agents')) return <AgentsPage />
  return <SandboxesPage />
}
