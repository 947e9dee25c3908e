/** The console's routes: paths under /ui, kept in the address bar with the History API. */
import { useEffect, useState } from 'preact/hooks'

/** Where the console is served. */
export const base = '/ui'

/** Goes to a console path (without the /ui prefix), as a link click would. */
export function navigate(path: string): void {
  if (location.pathname === base + path) return
  history.pushState(null, '', base + path)
  dispatchEvent(new PopStateEvent('popstate'))
}

/** The current console path (without /ui), following back, forward and navigate(). */
export function usePath(): string {
  const [path, setPath] = useState(current)
  useEffect(() => {
    const onPop = (): void => setPath(current())
    addEventListener('popstate', onPop)
    return () => removeEventListener('popstate', onPop)
  }, [])
  return path
}

function current(): string {
  const rest = location.pathname.startsWith(base) ? location.pathname.slice(base.length) : '/'
  return rest === '' ? '/' : rest
}

/** Click handler for in-app links: plain clicks route in place, modified clicks open as usual. */
export function onLinkClick(e: MouseEvent): void {
  const a = (e.currentTarget as HTMLAnchorElement | null) ?? undefined
  if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return
  const href = a.getAttribute('href') ?? ''
  if (!href.startsWith(base)) return
  e.preventDefault()
  navigate(href.slice(base.length) || '/')
}
