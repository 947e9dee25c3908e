import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { hostNetworkOf } from './network-flags.js'

describe('a host\'s network flags', () => {
  it('takes a count of connections per sandbox, and names the flag and what came for a bad one', () => {
    assert.deepEqual(hostNetworkOf({ sandboxConnections: '64' }), { connectionsPerSandbox: 64 })
    assert.deepEqual(hostNetworkOf({}), {})
    for (const bad of ['0', '-3', '1e3', 'many']) {
      assert.throws(() => hostNetworkOf({ sandboxConnections: bad }), new RegExp(`--sandbox-connections: expected a positive whole number, got "${bad}"`))
    }
  })

  it('checks upstream resolvers and ranges', () => {
    assert.throws(() => hostNetworkOf({ dnsUpstream: ['resolver.example'] }), /--dns-upstream: expected an IPv4 address/)
    assert.throws(() => hostNetworkOf({ publicCidr: ['10.0.0.0/33'] }), /--public-cidr: expected an IPv4 CIDR/)
    assert.deepEqual(hostNetworkOf({ sandboxCidr: '10.9.0.0/16', dnsUpstream: ['198.19.0.53:5353'] }), { sandboxCidr: '10.9.0.0/16', dnsUpstreams: ['198.19.0.53:5353'] })
  })
})
