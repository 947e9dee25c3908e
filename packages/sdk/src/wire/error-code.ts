/** The fixed set of error codes used on every boundary: runtime, agent, HTTP API and SDK. */
export type ErrorCode =
  | 'invalid_argument'
  | 'unauthenticated'
  | 'permission_denied'
  | 'not_found'
  | 'already_exists'
  | 'failed_precondition'
  | 'payload_too_large'
  | 'resource_exhausted'
  | 'deadline_exceeded'
  | 'canceled'
  | 'unavailable'
  | 'internal'
