/**
 * Relaying HTTP from a server that is not ours (an app in a sandbox, a host a sandbox may reach):
 * an answer Node reads but will not write must end that one exchange with an error answer, never
 * throw out of an event handler (which ends the process). What a client sends needs no such care:
 * Node's server parser refuses whatever its client would not send on.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'

/**
 * Writes an upstream answer's status and headers to `res`; false, with nothing written, when Node
 * will not write them (a status outside 100–999, which its parser reads, or a control byte in the
 * reason or a header), for the caller to answer 502.
 */
export function relayHead(res: ServerResponse, answer: IncomingMessage, headers: string[], statusMessage?: string): boolean {
  const status = answer.statusCode
  if (status === undefined || status < 100 || status > 999) return false
  try {
    res.writeHead(status, statusMessage, headers)
    return true
  } catch {
    // A header set before the bad one would go out with the error answer.
    for (const name of res.getHeaderNames()) res.removeHeader(name)
    return false
  }
}
