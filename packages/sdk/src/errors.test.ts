import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  AbortError,
  AuthenticationError,
  CommandExitError,
  ConflictError,
  FileTooLargeError,
  InvalidArgumentError,
  NotFoundError,
  RateLimitError,
  SandstormSdkError,
  TimeoutError,
  UnavailableError,
  errorFromWire,
} from './errors.js'
import { errorFromBody } from './http-client.js'

test('wire codes map to classes', () => {
  const cases: [string, new (...a: never[]) => SandstormSdkError][] = [
    ['not_found', NotFoundError],
    ['unauthenticated', AuthenticationError],
    ['permission_denied', AuthenticationError],
    ['invalid_argument', InvalidArgumentError],
    ['already_exists', ConflictError],
    ['failed_precondition', ConflictError],
    ['payload_too_large', FileTooLargeError],
    ['deadline_exceeded', TimeoutError],
    ['resource_exhausted', RateLimitError],
    ['unavailable', UnavailableError],
    ['canceled', AbortError],
  ]
  for (const [code, cls] of cases) {
    const err = errorFromWire(500, code, 'the message')
    assert.ok(err instanceof cls, code)
    assert.ok(err instanceof SandstormSdkError)
    assert.equal(err.code, code)
    assert.equal(err.message, 'the message')
  }
})

test('statuses map to classes when the body has no code', () => {
  assert.ok(errorFromWire(404, undefined, 'x') instanceof NotFoundError)
  assert.ok(errorFromWire(401, undefined, 'x') instanceof AuthenticationError)
  assert.ok(errorFromWire(400, undefined, 'x') instanceof InvalidArgumentError)
  assert.ok(errorFromWire(409, undefined, 'x') instanceof ConflictError)
  assert.ok(errorFromWire(413, undefined, 'x') instanceof FileTooLargeError)
  assert.ok(errorFromWire(429, undefined, 'x') instanceof RateLimitError)
  assert.ok(errorFromWire(503, undefined, 'x') instanceof UnavailableError)
  assert.ok(errorFromWire(504, undefined, 'x') instanceof TimeoutError)
  const other = errorFromWire(500, 'something_new', 'x')
  assert.equal(other.constructor, SandstormSdkError)
  assert.equal(other.code, 'internal')
})

test('an error body keeps the server message; a non-JSON body says what came', () => {
  const err = errorFromBody(400, 'Bad Request', '{"code":"invalid_argument","message":"memoryMiB: expected at least 16, got 1"}')
  assert.ok(err instanceof InvalidArgumentError)
  assert.equal(err.message, 'memoryMiB: expected at least 16, got 1')
  const proxy = errorFromBody(502, 'Bad Gateway', '<html>bad gateway</html>')
  assert.match(proxy.message, /502 Bad Gateway: <html>bad gateway/)
})

test('CommandExitError carries the result and a message with the last stderr line', () => {
  const result = { pid: 1, exitCode: 2, signal: null, timedOut: false, oomKilled: false, restoredTo: null, durationMs: 5, stdout: 'o', stderr: 'a\nno such file\n' }
  const err = new CommandExitError(result)
  assert.equal(err.exitCode, 2)
  assert.equal(err.stdout, 'o')
  assert.equal(err.code, 'command_exit')
  assert.match(err.message, /exited with code 2: no such file/)
})

test('CommandExitError says when a restore of the sandbox killed the command', () => {
  const result = { pid: 1, exitCode: 137, signal: 'SIGKILL', timedOut: false, oomKilled: false, restoredTo: 'snap-0123456789abcdef', durationMs: 5, stdout: '', stderr: '' }
  assert.match(new CommandExitError(result).message, /killed by a restore of its sandbox to snapshot snap-0123456789abcdef \(exit code 137\)/)
})
