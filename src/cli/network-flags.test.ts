import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { hostNetworkOf, serverNetworkOf } from './network-flags.js'

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

describe("a server's network flags", () => {
  it('take the idle timeout of ingress as a duration, and name the flag for a bad one', () => {
    assert.deepEqual(serverNetworkOf({ defaultEgress: 'all' }), { defaultEgress: 'all' })
    assert.deepEqual(serverNetworkOf({ defaultEgress: 'all', ingressIdleTimeout: '30m' }), { defaultEgress: 'all', ingressIdleMs: 1_800_000 })
    assert.throws(() => serverNetworkOf({ defaultEgress: 'all', ingressIdleTimeout: 'forever' }), /--ingress-idle-timeout: expected a duration such as 500ms, 30s, 10m/)
  })
})
