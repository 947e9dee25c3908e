import type { ErrorCode } from '@sandstorm/sdk/wire'

/** HTTP status for each code; the one place where a code becomes a status. */
export const httpStatusOf: Record<ErrorCode, number> = {
  invalid_argument: 400,
  unauthenticated: 401,
  permission_denied: 403,
  not_found: 404,
  already_exists: 409,
  failed_precondition: 409,
  payload_too_large: 413,
  resource_exhausted: 429,
  deadline_exceeded: 504,
  canceled: 499,
  unavailable: 503,
  internal: 500,
}

/** Options of a SandstormError. */
export interface SandstormErrorOptions {
  /** Kept for logs; never sent to a client or over the agent link. */
  cause?: unknown
  /**
   * Whether `message` may reach a client. Set where the error is made, by the code that knows what
   * the message holds: a message with a host path, an errno text or a tool's output must not.
   * @default true, but for `internal` errors (whose message is for the log)
   */
  expose?: boolean
}

/**
 * The one error class of Sandstorm. A client sees `message` only when `expose` says it may (an
 * error of the request, written for the caller); otherwise it sees a generic message with the
 * request's id, and the log has the message and the cause.
 */
export class SandstormError extends Error {
  override readonly name = 'SandstormError'
  /** Whether the message may be shown to a client (see SandstormErrorOptions). */
  readonly expose: boolean
  constructor(
    readonly code: ErrorCode,
    message: string,
    options: SandstormErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.expose = options.expose ?? code !== 'internal'
  }

  /** Wraps anything thrown into a SandstormError, keeping SandstormErrors as they are. */
  static from(err: unknown, fallback: ErrorCode = 'internal'): SandstormError {
    if (err instanceof SandstormError) return err
    if (isAbortError(err)) return new SandstormError('canceled', 'the operation was canceled', { cause: err })
    if (isDiskFull(err)) return diskFullError(undefined, err)
    const message = err instanceof Error ? err.message : String(err)
    return new SandstormError(fallback, message, { cause: err })
  }
}

/** Is this the error that an aborted AbortSignal throws? */
export function isAbortError(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || (err as { code?: string }).code === 'ABORT_ERR')
}

/**
 * Is this a write that the host's filesystem refused for want of space: an ENOSPC or EDQUOT from
 * node:fs, or SQLite's SQLITE_FULL? Its own message names the path, so it is never shown.
 */
export function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return err instanceof Error && (code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL')
}

/** Does a tool's complaint (cp, mkfs, mount) say that the disk or a quota is full? */
export function complainsOfFullDisk(text: string): boolean {
  return /No space left|ENOSPC|Disk quota exceeded/i.test(text)
}

/**
 * The one error for a host disk that is full: `resource_exhausted`, saying what failed (when
 * given) and what to do, never the path or tool output, which stay in `cause` for the log.
 */
export function diskFullError(what: string | undefined, cause: unknown): SandstormError {
  return new SandstormError('resource_exhausted', `${what ? `${what} failed: ` : ''}the host's disk is full: free space on it and try again`, { cause })
}

/**
 * A write refused before it filled the host's disk: `resource_exhausted`, saying what it needed
 * (when known: an unpack or an upload knows only what it has brought so far)
 * and what was free beyond the margin kept for the sandboxes' disks. No path, as diskFullError.
 */
export function noRoomError(what: string, need: { bytes: number; atLeast: boolean } | undefined, roomBytes: number): SandstormError {
  const needs = need ? `it needs ${need.atLeast ? 'at least ' : ''}${need.bytes} bytes and ` : ''
  return new SandstormError('resource_exhausted', `${what} failed: the host's disk is full: ${needs}${Math.max(0, roomBytes)} bytes are free beyond the margin kept for running sandboxes' disks; free space on it and try again`)
}

/** Maps an errno code from node:fs or a helper to an error code. */
export function codeOfErrno(errno: string | undefined): ErrorCode {
  switch (errno) {
    case 'ENOENT':
      return 'not_found'
    case 'EEXIST':
    case 'ENOTEMPTY':
      return 'already_exists'
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return 'permission_denied'
    case 'EISDIR':
    case 'ENOTDIR':
    case 'EINVAL':
    case 'ENAMETOOLONG':
      return 'invalid_argument'
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return 'resource_exhausted'
    default:
      return 'internal'
  }
}
