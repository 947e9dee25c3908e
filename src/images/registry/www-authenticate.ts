/** The `WWW-Authenticate` challenge of a registry: its scheme and parameters. */

/** A parsed challenge: `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`. */
export interface AuthChallenge {
  /** The scheme, lowercased: `bearer`, `basic`, … */
  scheme: string
  params: Record<string, string>
}

/** Parses the first challenge of a `WWW-Authenticate` header; undefined when there is none. */
export function parseAuthChallenge(header: string | null): AuthChallenge | undefined {
  if (!header) return undefined
  const match = /^\s*([A-Za-z][\w-]*)\s*(.*)$/s.exec(header)
  if (!match) return undefined
  const params: Record<string, string> = {}
  // key=value or key="quoted, with \" escapes", separated by commas.
  const param = /\s*([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?/gy
  const rest = match[2] ?? ''
  let m: RegExpExecArray | null
  while ((m = param.exec(rest)) !== null && m[0] !== '') {
    params[m[1]!.toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '')
  }
  return { scheme: match[1]!.toLowerCase(), params }
}
