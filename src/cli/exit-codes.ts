/**
 * Exit codes of `sandstorm`, for scripts to rely on:
 *
 * | code | meaning |
 * | --- | --- |
 * | 0 | ok |
 * | the command's own | `exec` and `run` exit with the code of the command they ran |
 * | 1 | any other error |
 * | 2 | bad usage or an invalid argument (a flag, a duration, a path; or the server said 400) |
 * | 3 | not found (sandbox, process, file, template) |
 * | 4 | authentication: no API key, or a wrong one |
 * | 5 | the server is unreachable or unavailable |
 * | 124 | the command ran past its `--timeout` and was killed (as `timeout(1)`) |
 * | 130 | interrupted (Ctrl-C) |
 */
import { CommandExitError, SandstormSdkError, TimeoutError } from '@sandstorm/sdk'
import { SandstormError } from '../shared/errors.js'

/** The fixed exit codes; `exec` and `run` otherwise pass on their command's own. */
export const exitCodes = {
  ok: 0,
  error: 1,
  usage: 2,
  notFound: 3,
  auth: 4,
  unreachable: 5,
  commandTimedOut: 124,
  interrupted: 130,
} as const

/** The exit code for an error, as the table above says. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof CommandExitError) return err.result.exitCode === 0 ? exitCodes.error : err.result.exitCode
  if (err instanceof TimeoutError && err.result) return exitCodes.commandTimedOut
  const code = err instanceof SandstormSdkError || isSandstormError(err) ? err.code : undefined
  switch (code) {
    case 'invalid_argument':
      return exitCodes.usage
    case 'not_found':
      return exitCodes.notFound
    case 'unauthenticated':
    case 'permission_denied':
      return exitCodes.auth
    case 'unavailable':
      return exitCodes.unreachable
    case 'canceled':
      return exitCodes.interrupted
    default:
      return exitCodes.error
  }
}

/**
 * A SandstormError by class or by shape: the bundled CLI (scripts/build-cli.mjs) holds its own copy
 * of the class, while the server and agent it loads with import() throw tsc's copy.
 */
function isSandstormError(err: unknown): err is SandstormError {
  return err instanceof SandstormError || (err instanceof Error && err.name === 'SandstormError' && typeof (err as { code?: unknown }).code === 'string')
}
