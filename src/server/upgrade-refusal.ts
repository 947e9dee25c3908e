/** What every upgrade route (ingress, tunnel, terminal, the edge itself) answers when it refuses one. */
import type { Duplex } from 'node:stream'
import { httpStatusOf, type Logger, type SandstormError } from '../shared/index.js'
import { shownMessage } from './http-errors.js'

/**
 * How long a refused upgrade's connection may stay open once the answer is written: the client
 * reads it and closes. An upgrade's socket is no longer the HTTP server's to time out, so one that
 * never closes its side would otherwise hold a descriptor for good.
 */
export const refusedLingerMs = 2000

/** Options of refuseUpgrade. */
export interface RefusalOptions {
  /** @default the error code's */
  status?: number
  /** The message sent in place of one the error may not show. @default a generic one */
  hiddenMessage?: string
}

/**
 * Answers a refused upgrade with an HTTP error and its JSON body ({ code, message }: the message
 * only where the error may show it, the whole error in the log otherwise), ends the socket, and
 * destroys it after `refusedLingerMs` unless the client has closed it by then.
 */
export function refuseUpgrade(socket: Duplex, err: SandstormError, logger: Logger, options: RefusalOptions = {}): void {
  const status = options.status ?? httpStatusOf[err.code]
  const message = shownMessage(err, logger, { status, upgrade: true }, options.hiddenMessage ?? 'the server could not answer this upgrade; it logged why')
  const body = JSON.stringify({ code: err.code, message })
  socket.on('error', () => undefined)
  socket.end(`HTTP/1.1 ${status} ${err.code}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
  const linger = setTimeout(() => socket.destroy(), refusedLingerMs).unref()
  socket.once('close', () => clearTimeout(linger))
}
