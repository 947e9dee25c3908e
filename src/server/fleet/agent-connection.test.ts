import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { httpStatusOf } from '../../shared/index.js'
import { fromWire } from './agent-connection.js'

describe("an agent's wire error", () => {
  it('keeps a code of ours, and makes any other an internal error that is not shown', () => {
    const known = fromWire({ code: 'not_found', message: 'sandbox "sb-x" not found' })
    assert.equal(known.code, 'not_found')
    assert.equal(known.expose, true)
    // A code that is none of ours had no HTTP status: writing its answer threw out of a handler.
    for (const code of ['x', 'constructor', '__proto__', 'toString']) {
      const err = fromWire({ code, message: 'from a hostile agent' })
      assert.equal(err.code, 'internal', code)
      assert.equal(err.expose, false)
      assert.equal(typeof httpStatusOf[err.code], 'number')
    }
  })
})
