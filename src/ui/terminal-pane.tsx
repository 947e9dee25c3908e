/**
 * A terminal into a sandbox: xterm.js over the WebSocket of GET /v1/sandboxes/:id/pty. Closing the
 * pane, the page or the tab closes the socket, and the server then ends the shell and what it ran.
 */
import { FitAddon } from '@xterm/addon-fit'
import { Terminal } from '@xterm/xterm'
import { useEffect, useRef, useState } from 'preact/hooks'
import type { PtyServerMessage } from '@sandstorm/sdk/wire'
import { messageOf, wsUrl } from './api.js'
import { useApi } from './api-context.js'

declare global {
  interface Window {
    /** The open terminal, for the console's browser tests to read its buffer. */
    __sandstormTerm?: Terminal
  }
}


// The protocol's names as the wire module (@sandstorm/sdk/wire) defines them. Typed by its literal types, so a
// change there fails this build; not imported, as that module brings zod (half a megabyte) along.
const ptyProtocol: typeof import('@sandstorm/sdk/wire').ptyProtocol = 'sandstorm-pty.v1'
const ptyKeyProtocolPrefix: typeof import('@sandstorm/sdk/wire').ptyKeyProtocolPrefix = 'sandstorm-key.'

/** The key as a subprotocol: base64url of its UTF-8 bytes, no padding (a subprotocol holds no '=', '+' or '/'). */
function ptyKeyProtocol(apiKey: string): string {
  let binary = ''
  for (const byte of new TextEncoder().encode(apiKey)) binary += String.fromCharCode(byte)
  return ptyKeyProtocolPrefix + btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

/** The terminal pane of a sandbox page. */
export function TerminalPane({ sandboxId }: { sandboxId: string }) {
  const api = useApi()
  const host = useRef<HTMLDivElement>(null)
  const [open, setOpen] = useState(true)
  const [session, setSession] = useState(0)
  const [status, setStatus] = useState('connecting…')
  const [failed, setFailed] = useState(false)

  useEffect(() => {
    if (!open || !host.current) return
    const term = new Terminal({
      cursorBlink: true,
      fontFamily: '"DejaVu Sans Mono", ui-monospace, monospace',
      fontSize: 14,
      scrollback: 5000,
      theme: { background: '#101418', foreground: '#e6e6e6', cursor: '#f0c674' },
    })
    const fit = new FitAddon()
    term.loadAddon(fit)
    term.open(host.current)
    fit.fit()
    window.__sandstormTerm = term
    setStatus('connecting…')
    setFailed(false)

    const ws = new WebSocket(wsUrl(`/v1/sandboxes/${encodeURIComponent(sandboxId)}/pty?cols=${term.cols}&rows=${term.rows}`), [
      ptyProtocol,
      // Browsers cannot set headers on a WebSocket: the key goes as a second subprotocol, never echoed.
      ptyKeyProtocol(api.key),
    ])
    ws.binaryType = 'arraybuffer'
    const encoder = new TextEncoder()
    let opened = false
    let ended = false
    let disposed = false

    ws.onopen = () => {
      opened = true
      setStatus('connected')
      term.focus()
    }
    ws.onmessage = (ev: MessageEvent<ArrayBuffer | string>) => {
      if (typeof ev.data !== 'string') return term.write(new Uint8Array(ev.data))
      let msg: PtyServerMessage
      try {
        msg = JSON.parse(ev.data) as PtyServerMessage
      } catch {
        return
      }
      if (msg.type === 'start') setStatus(`running (pid ${msg.pid})`)
      else if (msg.type === 'exit') {
        ended = true
        setStatus(`the shell exited with code ${msg.exitCode}${msg.signal ? ` (${msg.signal})` : ''}`)
      } else if (msg.type === 'error') {
        ended = true
        setFailed(true)
        setStatus(msg.message)
      }
    }
    ws.onclose = (ev) => {
      term.options.disableStdin = true
      if (disposed || ended) return
      if (opened) {
        setStatus(`disconnected${ev.reason ? `: ${ev.reason}` : ''} (code ${ev.code})`)
        return
      }
      // A refused handshake tells the page nothing (1006); ask the API why, in its own words.
      setFailed(true)
      setStatus('could not connect…')
      api
        .getSandbox(sandboxId)
        .then((info) =>
          setStatus(info.state === 'running' ? 'the server refused the terminal (is the terminal route available on this server?)' : `the sandbox is ${info.state}`),
        )
        .catch((err: unknown) => setStatus(`could not connect: ${messageOf(err)}`))
    }
    const input = term.onData((data) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(data))
    })
    const resize = term.onResize(({ cols, rows }) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'resize', cols, rows }))
    })
    const observer = new ResizeObserver(() => {
      try {
        fit.fit()
      } catch {
        // Not laid out (a hidden pane): nothing to fit.
      }
    })
    observer.observe(host.current)
    const onPageHide = (): void => ws.close(1000, 'page closed')
    addEventListener('pagehide', onPageHide)

    return () => {
      disposed = true
      removeEventListener('pagehide', onPageHide)
      observer.disconnect()
      input.dispose()
      resize.dispose()
      ws.close(1000, 'terminal closed')
      if (window.__sandstormTerm === term) delete window.__sandstormTerm
      term.dispose()
    }
  }, [sandboxId, open, session, api])

  return (
    <div class="terminal-pane">
      <div class="toolbar">
        <span class={`term-status ${failed ? 'error' : 'muted'}`} id="term-status">
          {open ? status : 'closed'}
        </span>
        <span class="grow" />
        {open ? (
          <button name="close-terminal" onClick={() => setOpen(false)}>
            Close terminal
          </button>
        ) : null}
        <button
          name="new-terminal"
          onClick={() => {
            setOpen(true)
            setSession((n) => n + 1)
          }}
        >
          {open ? 'Restart' : 'Open terminal'}
        </button>
      </div>
      {open && (
        <div class="terminal-frame">
          <div class="terminal" ref={host} />
        </div>
      )}
    </div>
  )
}
