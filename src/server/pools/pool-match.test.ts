import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { matchesPool } from './pool-match.js'

const pooled = { template: 'debian', runtime: 'runc', memoryMiB: 512, cpus: 1, pidsMax: 1024 }

describe('matchesPool', () => {
  it('takes a request that gives nothing but the template, labels and a timeout', () => {
    assert.equal(matchesPool({ template: 'debian', labels: { a: 'b' }, timeoutMs: 1000 }, pooled), true)
  })
  it('takes a request that spells out the pooled config', () => {
    assert.equal(matchesPool({ template: 'debian', runtime: 'runc', memoryMiB: 512, cpus: 1, pidsMax: 1024, network: 'none', env: {} }, pooled), true)
  })
  it('refuses another template, another runtime, other limits, or any env', () => {
    assert.equal(matchesPool({ template: 'alpine' }, pooled), false)
    assert.equal(matchesPool({ template: 'debian', runtime: 'qemu' }, pooled), false)
    assert.equal(matchesPool({ template: 'debian', memoryMiB: 256 }, pooled), false)
    assert.equal(matchesPool({ template: 'debian', cpus: 2 }, pooled), false)
    assert.equal(matchesPool({ template: 'debian', pidsMax: 64 }, pooled), false)
    assert.equal(matchesPool({ template: 'debian', env: { A: '1' } }, pooled), false)
  })
})
