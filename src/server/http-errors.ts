import { httpStatusOf, SandstormError } from '../shared/index.js'
import type { ErrorBody, Logger } from '../shared/index.js'

/**
 * The one place where an error becomes a response. A SandstormError's message is meant for the
 * client; anything else is an internal error whose details (the cause) go to the log only.
 */
export function errorResponse(err: unknown, logger: Logger, context: Record<string, unknown> = {}): Response {
  const error = SandstormError.from(err)
  const status = httpStatusOf[error.code]
  const raw = !(err instanceof SandstormError) && error.code === 'internal'
  const body: ErrorBody = {
    code: error.code,
    message: raw ? 'an internal error happened; the server has logged its cause' : error.message,
  }
  if (status >= 500) logger.error({ ...context, err: error.cause ?? error, code: error.code }, error.message)
  else logger.info({ ...context, code: error.code, status }, error.message)
  return jsonResponse(body, status)
}

/** A JSON response with any status, 499 included (which Hono's typed helpers do not allow). */
export function jsonResponse(body: unknown, status: number): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })
}
