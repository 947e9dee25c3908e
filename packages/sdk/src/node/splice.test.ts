import assert from 'node:assert/strict'
import { PassThrough } from 'node:stream'
import { describe, it } from 'node:test'
import { splice } from './splice.js'

describe('splice', () => {
  it('closes the other side when one is gone before the splice (its close has fired already)', async () => {
    const gone = new PassThrough()
    gone.destroy()
    await new Promise((resolve) => gone.once('close', resolve))
    const other = new PassThrough()
    splice(gone, other)
    assert.ok(other.destroyed, 'the other side stays open')
  })

  it('a cut on one side destroys both', async () => {
    const a = new PassThrough()
    const b = new PassThrough()
    splice(a, b)
    b.destroy(new Error('cut'))
    await new Promise((resolve) => setImmediate(resolve))
    assert.ok(a.destroyed)
  })
})
