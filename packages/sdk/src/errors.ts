/**
 * The SDK's error classes. A wire error (`{ code, message }` with an HTTP status) becomes one of
 * these in `errorFromWire`, the only place where codes and statuses turn into classes.
 */
import type { ErrorCode } from './wire/index.js'
import type { CommandResult } from './command-result.js'

/** A wire error code, or `command_exit` for a command that ended with a non-zero exit code. */
export type SdkErrorCode = ErrorCode | 'command_exit'

/** Base of every error the SDK throws; `code` is the wire code it came from. */
export class SandstormSdkError extends Error {
  override name = 'SandstormSdkError'
  constructor(
    readonly code: SdkErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }

  /**
   * Whether trying the same call again later may succeed: the server or the sandbox's host was
   * unreachable for a moment (a restart, a lost agent). A retried command may run twice.
   */
  get retryable(): boolean {
    return this.code === 'unavailable'
  }
}

/** The sandbox, process, file or template does not exist (404). */
export class NotFoundError extends SandstormSdkError {
  override name = 'NotFoundError'
}

/** The API key is missing or wrong (401), or it may not do this (403). */
export class AuthenticationError extends SandstormSdkError {
  override name = 'AuthenticationError'
}

/** The request was malformed; the message says what was expected (400). */
export class InvalidArgumentError extends SandstormSdkError {
  override name = 'InvalidArgumentError'
}

/** The thing already exists, or is not in a state that allows this (409). */
export class ConflictError extends SandstormSdkError {
  override name = 'ConflictError'
}

/** The upload is larger than the server accepts (413). */
export class FileTooLargeError extends SandstormSdkError {
  override name = 'FileTooLargeError'
}

/**
 * A deadline passed: the server's (504), the request's own `requestTimeoutMs`, or a command's
 * `timeoutMs`, in which case `result` says how the command ended.
 */
export class TimeoutError extends SandstormSdkError {
  override name = 'TimeoutError'
  constructor(
    message: string,
    readonly result?: CommandResult,
    options?: { cause?: unknown },
  ) {
    super('deadline_exceeded', message, options)
  }
}

/** Too many requests or sandboxes, or the host is out of a resource (429). */
export class RateLimitError extends SandstormSdkError {
  override name = 'RateLimitError'
}

/** The server (503) or the way to it is not available now. */
export class UnavailableError extends SandstormSdkError {
  override name = 'UnavailableError'
}

/** No answer at all: the server could not be reached (refused, reset, unknown host). */
export class ConnectionError extends UnavailableError {
  override name = 'ConnectionError'
}

/** The caller aborted the call through its `signal`. */
export class AbortError extends SandstormSdkError {
  override name = 'AbortError'
  constructor(message = 'the operation was aborted', options?: { cause?: unknown }) {
    super('canceled', message, options)
  }
}

/** A command ended with a non-zero exit code; `result` holds its output and how it ended. */
export class CommandExitError extends SandstormSdkError {
  override name = 'CommandExitError'
  constructor(readonly result: CommandResult) {
    super('command_exit', commandExitMessage(result))
  }
  /** Exit code of the command. */
  get exitCode(): number {
    return this.result.exitCode
  }
  /** What the command printed on stdout. */
  get stdout(): string {
    return this.result.stdout
  }
  /** What the command printed on stderr. */
  get stderr(): string {
    return this.result.stderr
  }
}

function commandExitMessage(r: CommandResult): string {
  if (r.restoredTo) return `the command was killed by a restore of its sandbox to snapshot ${r.restoredTo} (exit code ${r.exitCode})`
  if (r.oomKilled) return `the command was killed for using more memory than the sandbox has (exit code ${r.exitCode})`
  const how = r.signal ? ` after ${r.signal}` : ''
  const tail = r.stderr.trim().split('\n').slice(-1)[0] ?? ''
  return `the command exited with code ${r.exitCode}${how}${tail ? `: ${tail.slice(0, 300)}` : ''}`
}

const statusCodes: Record<number, ErrorCode> = {
  400: 'invalid_argument',
  401: 'unauthenticated',
  403: 'permission_denied',
  404: 'not_found',
  409: 'already_exists',
  413: 'payload_too_large',
  429: 'resource_exhausted',
  499: 'canceled',
  503: 'unavailable',
  504: 'deadline_exceeded',
}

/**
 * Turns a wire error into its class: by its `code` when the body has one, else by the HTTP status.
 * This is the one place where codes and statuses become SDK classes.
 */
export function errorFromWire(status: number, code: string | undefined, message: string): SandstormSdkError {
  const c = (code as ErrorCode | undefined) ?? statusCodes[status] ?? 'internal'
  switch (c) {
    case 'not_found':
      return new NotFoundError(c, message)
    case 'unauthenticated':
    case 'permission_denied':
      return new AuthenticationError(c, message)
    case 'invalid_argument':
      return new InvalidArgumentError(c, message)
    case 'already_exists':
    case 'failed_precondition':
      return new ConflictError(c, message)
    case 'payload_too_large':
      return new FileTooLargeError(c, message)
    case 'deadline_exceeded':
      return new TimeoutError(message)
    case 'resource_exhausted':
      return new RateLimitError(c, message)
    case 'unavailable':
      return new UnavailableError(c, message)
    case 'canceled':
      return new AbortError(message)
    default:
      // 'internal', and any code a newer server sends that this SDK does not know yet.
      return new SandstormSdkError('internal', message)
  }
}
