/** The sign-in: an API key, checked against the server before it is kept for this tab. */
import { useState } from 'preact/hooks'
import { checkKey, messageOf } from './api.js'
import { Logo } from './bits.js'

/** Props of SignIn. */
export interface SignInProps {
  /** Why the user is here again (a key refused mid-session), if that is why. */
  notice?: string
  onSignedIn(key: string): void
}

/** The sign-in page. */
export function SignIn({ notice, onSignedIn }: SignInProps) {
  const [key, setKey] = useState('')
  const [error, setError] = useState<string>()
  const [busy, setBusy] = useState(false)

  const submit = async (e: SubmitEvent): Promise<void> => {
    e.preventDefault()
    const trimmed = key.trim()
    if (!trimmed) return setError('Enter an API key.')
    setBusy(true)
    setError(undefined)
    try {
      await checkKey(trimmed)
      onSignedIn(trimmed)
    } catch (err) {
      setError(messageOf(err))
    } finally {
      setBusy(false)
    }
  }

  return (
    <main class="sign-in">
      <form class="card" id="sign-in" onSubmit={(e) => void submit(e)}>
        <h1>
          <Logo /> Sandstorm
        </h1>
        <p class="muted">
          Sign in with an API key. <code>sandstorm up</code> writes one to <code>/var/lib/sandstorm/api-key</code>. It is kept in this tab only.
        </p>
        {notice && (
          <p class="notice" id="sign-in-notice">
            {notice}
          </p>
        )}
        <label class="block">
          API key
          <input name="apiKey" type="password" autocomplete="off" autofocus value={key} onInput={(e) => setKey(e.currentTarget.value)} />
        </label>
        {error && (
          <p class="error" id="sign-in-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
      </form>
    </main>
  )
}
