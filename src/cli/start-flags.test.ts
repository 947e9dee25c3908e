import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { startFromFlags } from './start-flags.js'

describe('start command flags', () => {
  it('makes no start command without --start', () => {
    assert.equal(startFromFlags({}), undefined)
  })

  it('makes an HTTP ready check from PORT or PORT/PATH, and a command check', () => {
    assert.deepEqual(startFromFlags({ start: 'exec srv', readyHttp: '8080' }), { cmd: 'exec srv', ready: { type: 'http', port: 8080, path: '/' } })
    assert.deepEqual(startFromFlags({ start: 'exec srv', startUser: 'user', readyHttp: '49999/health', readyTimeout: '90s' }), {
      cmd: 'exec srv',
      user: 'user',
      ready: { type: 'http', port: 49999, path: '/health' },
      readyTimeoutMs: 90_000,
    })
    assert.deepEqual(startFromFlags({ start: 'exec srv', readyCmd: 'test -S /run/srv.sock' }), { cmd: 'exec srv', ready: { type: 'command', cmd: 'test -S /run/srv.sock' } })
  })

  it('names the flag that is wrong or missing', () => {
    assert.throws(() => startFromFlags({ readyHttp: '80' }), /--ready-http needs --start/)
    assert.throws(() => startFromFlags({ start: 'x' }), /exactly one of --ready-http PORT\[\/PATH\] or --ready-cmd CMD/)
    assert.throws(() => startFromFlags({ start: 'x', readyHttp: '80', readyCmd: 'true' }), /exactly one of/)
    assert.throws(() => startFromFlags({ start: 'x', readyHttp: 'http://x' }), /--ready-http: expected PORT or PORT\/PATH such as 8080\/health, got "http:\/\/x"/)
    assert.throws(() => startFromFlags({ start: 'x', readyCmd: 'true', readyTimeout: 'soon' }), /--ready-timeout: expected a duration/)
  })
})
