import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import { ingressTargetOf } from './ingress-target.js'

const id = 'sb-k3j9x0q2m1c8v7d4'
const refused = (pattern: RegExp) => (err: unknown) => err instanceof SandstormError && err.code === 'invalid_argument' && pattern.test(err.message)

describe('ingressTargetOf', () => {
  it('reads <port>-<id>.<domain> from Host, with the domain port or without one', () => {
    assert.deepEqual(ingressTargetOf({ host: `8000-${id}.localhost:7420` }, 'localhost:7420'), { sandboxId: id, port: 8000, by: 'host' })
    assert.deepEqual(ingressTargetOf({ host: `3000-${id}.Sandbox.Example.COM:443` }, 'sandbox.example.com'), { sandboxId: id, port: 3000, by: 'host' })
  })

  it('leaves the server its own hosts and envd its port', () => {
    assert.equal(ingressTargetOf({ host: '127.0.0.1:7420' }, 'localhost:7420'), undefined)
    assert.equal(ingressTargetOf({ host: 'localhost:7420' }, 'localhost:7420'), undefined)
    assert.equal(ingressTargetOf({ host: `49983-${id}.localhost:7420` }, 'localhost:7420'), undefined)
    assert.equal(ingressTargetOf({ 'e2b-sandbox-id': id, 'e2b-sandbox-port': '49983' }, 'localhost:7420'), undefined)
  })

  it('takes the E2B headers before the Host', () => {
    assert.deepEqual(ingressTargetOf({ host: '127.0.0.1:7420', 'e2b-sandbox-id': id, 'e2b-sandbox-port': '49999' }, 'localhost:7420'), { sandboxId: id, port: 49999, by: 'headers' })
  })

  it('answers a malformed host, port or id with a 400 that shows the expected form', () => {
    assert.throws(() => ingressTargetOf({ host: 'www.localhost:7420' }, 'localhost:7420'), refused(/expected <port>-<sandbox id>\.localhost:7420/))
    assert.throws(() => ingressTargetOf({ host: `99999-${id}.localhost:7420` }, 'localhost:7420'), refused(/expected a port from 1 to 65535, got "99999"/))
    assert.throws(() => ingressTargetOf({ 'e2b-sandbox-id': '../etc', 'e2b-sandbox-port': '80' }, 'x'), refused(/^E2b-Sandbox-Id: expected a sandbox id/))
    assert.throws(() => ingressTargetOf({ 'e2b-sandbox-id': id, 'e2b-sandbox-port': 'http' }, 'x'), refused(/^E2b-Sandbox-Port: expected a port/))
  })
})
