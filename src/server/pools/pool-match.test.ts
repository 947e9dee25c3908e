import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { matchesPool } from './pool-match.js'

const pooled = { template: 'debian', runtime: 'runc', memoryMiB: 512, cpus: 1, pidsMax: 1024, diskMiB: 2048 }
const net = { allowOut: [], denyOut: [], allowPublicTraffic: true }

describe('matchesPool', () => {
  it('takes a request that gives nothing but the template, labels and a timeout', () => {
    assert.equal(matchesPool({ template: 'debian', labels: { a: 'b' }, timeoutMs: 1000 }, net, pooled), true)
  })
  it('takes a request that spells out the pooled config', () => {
    assert.equal(matchesPool({ template: 'debian', runtime: 'runc', memoryMiB: 512, cpus: 1, pidsMax: 1024, network: {}, env: {} }, net, pooled), true)
  })
  it('refuses another template, another runtime, other limits, or any env', () => {
    assert.equal(matchesPool({ template: 'alpine' }, net, pooled), false)
    assert.equal(matchesPool({ template: 'debian', runtime: 'qemu' }, net, pooled), false)
    assert.equal(matchesPool({ template: 'debian', memoryMiB: 256 }, net, pooled), false)
    assert.equal(matchesPool({ template: 'debian', cpus: 2 }, net, pooled), false)
    assert.equal(matchesPool({ template: 'debian', pidsMax: 64 }, net, pooled), false)
    assert.equal(matchesPool({ template: 'debian', env: { A: '1' } }, net, pooled), false)
  })
  it('refuses a sandbox without a network (pooled ones have one; their policy is set at hand-over)', () => {
    assert.equal(matchesPool({ template: 'debian', network: 'none' }, 'none', pooled), false)
    assert.equal(matchesPool({ template: 'debian', network: { denyOut: ['0.0.0.0/0'] } }, { ...net, denyOut: ['0.0.0.0/0'] }, pooled), true)
  })
})
