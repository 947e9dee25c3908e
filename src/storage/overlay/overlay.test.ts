import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { kernelAtLeast } from './overlay.js'

describe('kernelAtLeast', () => {
  it('compares the major and minor of a kernel release', () => {
    assert.equal(kernelAtLeast('6.1.0-18-amd64', 5, 10), true)
    assert.equal(kernelAtLeast('5.10.0-28-amd64', 5, 10), true)
    assert.equal(kernelAtLeast('5.9.16', 5, 10), false)
    assert.equal(kernelAtLeast('5.4.0-150-generic', 5, 10), false)
    assert.equal(kernelAtLeast('4.19.0', 5, 10), false)
    assert.equal(kernelAtLeast('10.0.1', 5, 10), true)
  })
  it('takes a release it cannot read as too old', () => {
    assert.equal(kernelAtLeast('', 5, 10), false)
    assert.equal(kernelAtLeast('linux', 5, 10), false)
  })
})
