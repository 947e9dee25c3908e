/**
 * Relaying HTTP between a client and a server that is not ours (an app in a sandbox, a host a
 * sandbox may reach): what either side sends that Node will not write must end that one exchange
 * with an error answer, never throw out of an event handler (which ends the process).
 */
import { request, type ClientRequest, type IncomingMessage, type RequestOptions, type ServerResponse } from 'node:http'

/**
 * Starts the upstream request of a relayed one, or returns why Node refused to: a target with a
 * character Node's client will not send (a tab, which its server's parser lets through) or a
 * header value it will not write.
 */
export function relayRequest(options: RequestOptions): ClientRequest | Error {
  try {
    return request(options)
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err))
  }
}

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
