/** Where Sandstorm's error codes become E2B's: Connect codes for envd, `{code, message}` for REST. */
import { Code, ConnectError } from '@connectrpc/connect'
import { httpStatusOf, SandstormError } from '../../shared/index.js'
import type { ErrorCode, Logger } from '../../shared/index.js'
import { logError } from '../http-errors.js'
import { hiddenMessage } from '../request-context.js'

const connectCodeOf: Record<ErrorCode, Code> = {
  invalid_argument: Code.InvalidArgument,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  payload_too_large: Code.ResourceExhausted,
  resource_exhausted: Code.ResourceExhausted,
  deadline_exceeded: Code.DeadlineExceeded,
  canceled: Code.Canceled,
  unavailable: Code.Unavailable,
  internal: Code.Internal,
}

/** A ConnectError for anything thrown; internal causes go to the log, never on the wire. */
export function toConnectError(err: unknown, logger: Logger): ConnectError {
  if (err instanceof ConnectError) return err
  const error = SandstormError.from(err)
  if (!error.expose) logError(error, logger, { surface: 'envd' }, httpStatusOf[error.code])
  return new ConnectError(error.expose ? error.message : hiddenMessage(), connectCodeOf[error.code])
}

/**
 * E2B's REST error: `{code, message}` where code is the HTTP status (the SDK compares
 * `error.code === 404`). A sandbox that is not running answers envd calls with 502, as E2B's proxy.
 */
export function restError(err: unknown, logger: Logger, status?: number): Response {
  const body = restErrorBody(err, logger, status)
  return new Response(JSON.stringify(body), { status: body.code, headers: { 'content-type': 'application/json' } })
}

/** E2B's `{code, message}` for an error, logged as restError logs it (one fork's failure inside a 201, say). */
export function restErrorBody(err: unknown, logger: Logger, status?: number): { code: number; message: string } {
  const error = SandstormError.from(err)
  const code = status ?? httpStatusOf[error.code]
  logError(error, logger, { surface: 'e2b' }, code)
  return { code, message: error.expose ? error.message : hiddenMessage() }
}
