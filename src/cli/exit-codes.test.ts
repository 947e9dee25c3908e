import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  AuthenticationError,
  CommandExitError,
  ConnectionError,
  InvalidArgumentError,
  NotFoundError,
  SandstormSdkError,
  TimeoutError,
  UnavailableError,
} from '@sandstorm/sdk'
import { SandstormError } from '../shared/index.js'
import { exitCodeOf } from './exit-codes.js'

const result = { pid: 1, exitCode: 7, signal: null, timedOut: false, oomKilled: false, restoredTo: null, durationMs: 1, stdout: '', stderr: '' }

test('errors map to the documented exit codes', () => {
  assert.equal(exitCodeOf(new CommandExitError(result)), 7)
  assert.equal(exitCodeOf(new TimeoutError('t', { ...result, exitCode: 137, timedOut: true })), 124)
  assert.equal(exitCodeOf(new TimeoutError('request deadline')), 1)
  assert.equal(exitCodeOf(new InvalidArgumentError('invalid_argument', 'x')), 2)
  assert.equal(exitCodeOf(new NotFoundError('not_found', 'x')), 3)
  assert.equal(exitCodeOf(new AuthenticationError('unauthenticated', 'x')), 4)
  assert.equal(exitCodeOf(new ConnectionError('unavailable', 'x')), 5)
  assert.equal(exitCodeOf(new UnavailableError('unavailable', 'x')), 5)
  assert.equal(exitCodeOf(new SandstormSdkError('internal', 'x')), 1)
  assert.equal(exitCodeOf(new SandstormError('not_found', 'template')), 3)
  assert.equal(exitCodeOf(new Error('x')), 1)
})
