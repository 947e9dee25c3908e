import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { matchesPoolFromSnapshot } from './snapshot-handover.js'

const pooled = { template: 'debian', runtime: 'runc', memoryMiB: 512, cpus: 1, pidsMax: 1024, diskMiB: 2048 }
const net = { allowOut: [], denyOut: [], allowPublicTraffic: true }
/** What a fork of a snapshot of a default debian sandbox asks for. */
const fork = { template: 'debian', memoryMiB: 512, cpus: 1, pidsMax: 1024, diskMiB: 2048, env: { FROM_PARENT: 'yes' } }

describe('matchesPoolFromSnapshot', () => {
  it('takes the snapshot\'s env, which the restore sets', () => {
    assert.equal(matchesPoolFromSnapshot(fork, net, pooled), true)
  })
  it('refuses another template, other limits or no network, as a create of the template does', () => {
    assert.equal(matchesPoolFromSnapshot({ ...fork, template: 'base' }, net, pooled), false)
    assert.equal(matchesPoolFromSnapshot({ ...fork, memoryMiB: 300 }, net, pooled), false)
    assert.equal(matchesPoolFromSnapshot({ ...fork, cpus: 2 }, net, pooled), false)
    assert.equal(matchesPoolFromSnapshot({ ...fork, pidsMax: 64 }, net, pooled), false)
    assert.equal(matchesPoolFromSnapshot({ ...fork, diskMiB: 1024 }, net, pooled), false)
    assert.equal(matchesPoolFromSnapshot({ ...fork, network: 'none' }, 'none', pooled), false)
  })
})
