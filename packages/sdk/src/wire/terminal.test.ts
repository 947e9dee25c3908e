import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ptyClientMessage, ptyQuery, terminalSize } from './terminal.js'
import { ptyKeyProtocol, ptyKeyProtocolPrefix } from './terminal-protocol.js'

test('the key as a subprotocol is base64url (token characters only) and decodes back', () => {
  for (const key of ['sk_abc', 'e2b_0123456789abcdef', 'a+b/c=d?é']) {
    const protocol = ptyKeyProtocol(key)
    assert.ok(protocol.startsWith(ptyKeyProtocolPrefix))
    assert.match(protocol, /^[A-Za-z0-9._-]+$/, 'a WebSocket subprotocol must be an HTTP token')
    assert.equal(Buffer.from(protocol.slice(ptyKeyProtocolPrefix.length), 'base64url').toString('utf8'), key)
  }
})

test('sizes are whole numbers of 1..1000 cells, in bodies and in queries', () => {
  assert.deepEqual(terminalSize.parse({ cols: 1, rows: 1000 }), { cols: 1, rows: 1000 })
  for (const bad of [{ cols: 0, rows: 24 }, { cols: 80, rows: 1001 }, { cols: 80.5, rows: 24 }, { cols: 80 }, { cols: 80, rows: 24, x: 1 }]) {
    assert.equal(terminalSize.safeParse(bad).success, false, JSON.stringify(bad))
  }
  assert.deepEqual(ptyQuery.parse({ cols: '120', rows: '40', cmd: ['vi', 'x'], env: ['A=b=c'] }), { cols: 120, rows: 40, cmd: ['vi', 'x'], env: ['A=b=c'] })
  for (const bad of [{ cols: '0', rows: '24' }, { cols: 'abc', rows: '24' }, { cols: '80', rows: '' }, { cols: '80', rows: '24', cwd: 'rel' }, { cols: '80', rows: '24', env: ['1A=x'] }, { cols: '80', rows: '24', term: 'x y' }]) {
    assert.equal(ptyQuery.safeParse(bad).success, false, JSON.stringify(bad))
  }
})

test('a client message is a resize', () => {
  assert.deepEqual(ptyClientMessage.parse({ type: 'resize', cols: 80, rows: 24 }), { type: 'resize', cols: 80, rows: 24 })
  assert.equal(ptyClientMessage.safeParse({ type: 'input', data: 'x' }).success, false)
})
