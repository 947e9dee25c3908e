/**
 * Which sandbox port a request is for, if any: by its Host (`<port>-<sandbox id>.<domain>`, as
 * E2B's getHost builds it), or by the headers E2B's SDKs send to E2B_SANDBOX_URL (`E2b-Sandbox-Id`
 * and `E2b-Sandbox-Port`). Headers are looked at first, so a request to the server's own name is
 * still a sandbox's when they say so. envd's port is not a sandbox port: envd is the server's.
 */
import type { IncomingHttpHeaders } from 'node:http'
import { checkPort, idPattern, SandstormError } from '../../shared/index.js'

/** The port E2B's SDK reaches envd on; requests for it go to the server's envd routes. */
export const envdPort = 49983

/** A sandbox port a request is for. */
export interface IngressTarget {
  sandboxId: string
  port: number
  /** How the request named it: the Host header or E2B's routing headers. */
  by: 'host' | 'headers'
}

const hostForm = /^([0-9]{1,5})-([a-z]{2,4}-[a-z0-9]{16})$/

/**
 * The target of a request, or undefined when it is for the server itself. A Host under the
 * domain whose first label is not `<port>-<id>`, or headers that name a malformed id or port,
 * are a 400 that says so.
 */
export function ingressTargetOf(headers: IncomingHttpHeaders, domain: string): IngressTarget | undefined {
  const headerId = single(headers['e2b-sandbox-id'])
  const headerPort = single(headers['e2b-sandbox-port'])
  if (headerId !== undefined || headerPort !== undefined) {
    if (headerId === undefined || headerPort === undefined) return undefined
    const port = checkPort(headerPort, 'E2b-Sandbox-Port')
    if (port === envdPort) return undefined
    if (!idPattern.test(headerId)) throw new SandstormError('invalid_argument', `E2b-Sandbox-Id: expected a sandbox id such as sb-k3j9x0q2m1c8v7d4, got ${JSON.stringify(headerId.slice(0, 80))}`)
    return { sandboxId: headerId, port, by: 'headers' }
  }
  const host = (headers.host ?? '').toLowerCase()
  const suffix = `.${domain.toLowerCase()}`
  // A domain without a port matches whatever port the Host carries (a proxy in front may add one).
  const bare = domain.includes(':') ? host : host.replace(/:[0-9]+$/, '')
  if (!bare.endsWith(suffix)) return undefined
  const label = bare.slice(0, -suffix.length)
  const match = hostForm.exec(label)
  if (!match) {
    throw new SandstormError('invalid_argument', `Host ${JSON.stringify(host.slice(0, 120))}: expected <port>-<sandbox id>.${domain}, e.g. 8000-sb-k3j9x0q2m1c8v7d4.${domain}`)
  }
  const port = checkPort(match[1]!, 'the port in Host')
  if (port === envdPort) return undefined
  return { sandboxId: match[2]!, port, by: 'host' }
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}
