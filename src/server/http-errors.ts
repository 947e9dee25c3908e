import { httpStatusOf, SandstormError } from '../shared/index.js'
import type { ErrorBody, Logger } from '../shared/index.js'
import { currentRequestId, hiddenMessage } from './request-context.js'

/**
 * The one place where an error of /v1 becomes a response. A message the error may show goes to the
 * client; any other (an internal error, a host's details) becomes a generic one naming the request,
 * and goes to the log whole.
 */
export function errorResponse(err: unknown, logger: Logger, context: Record<string, unknown> = {}): Response {
  const error = SandstormError.from(err)
  const status = httpStatusOf[error.code]
  const body: ErrorBody = { code: error.code, message: error.expose ? error.message : hiddenMessage() }
  logError(error, logger, context, status)
  return jsonResponse(body, status)
}

/**
 * What a client outside the app's routes (ingress, a terminal) is told of an error: its message
 * where the error may show it; else `hidden`, and the whole error goes to the log, as errorResponse does.
 */
export function shownMessage(error: SandstormError, logger: Logger, context: Record<string, unknown> = {}, hidden = hiddenMessage()): string {
  if (error.expose) return error.message
  logger.error({ ...context, requestId: currentRequestId(), code: error.code, err: error.cause ?? error }, error.message)
  return hidden
}

/** Logs an error answered with `status`: the whole message and cause, with the request's id. */
export function logError(error: SandstormError, logger: Logger, context: Record<string, unknown>, status: number): void {
  const fields = { ...context, requestId: currentRequestId(), code: error.code, status }
  // An exposed `unavailable` (a lost agent, a restart) is expected and retryable: a warning, not an error.
  if (!error.expose || (status >= 500 && error.code !== 'unavailable')) logger.error({ ...fields, err: error.cause ?? error }, error.message)
  else if (status >= 500) logger.warn({ ...fields, err: error.cause ?? error }, error.message)
  else logger.info({ ...fields, ...(error.cause !== undefined ? { err: error.cause } : {}) }, error.message)
}

/** A JSON response with any status, 499 included (which Hono's typed helpers do not allow). */
export function jsonResponse(body: unknown, status: number): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })
}
