import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { checkEgress, checkMaskRequestHost, checkNetwork, checkPort, isDomain, toCidr } from './network.js'
import { SandstormError } from './errors.js'

const refused = (pattern: RegExp) => (err: unknown) => err instanceof SandstormError && err.code === 'invalid_argument' && pattern.test(err.message)

describe('egress policies', () => {
  it('normalizes addresses to CIDRs and domains to lower case', () => {
    assert.deepEqual(checkEgress({ allowOut: ['10.1.2.3', '10.1.2.3/8', 'Example.COM', '*.pypi.org'], denyOut: ['0.0.0.0/0'] }), {
      allowOut: ['10.1.2.3/32', '10.0.0.0/8', 'example.com', '*.pypi.org'],
      denyOut: ['0.0.0.0/0'],
    })
    assert.equal(toCidr('1.2.3.4/33'), undefined)
    assert.equal(toCidr('1.2.3'), undefined)
    assert.equal(isDomain('a..b'), false)
    assert.equal(isDomain('-a.b'), false)
    assert.equal(isDomain('1.2.3.4'), false)
    assert.equal(isDomain('*.x.y'), true)
    assert.equal(isDomain('*.x.y', false), false)
  })

  it('turns allowInternetAccess false into a deny of everything', () => {
    assert.deepEqual(checkEgress({ allowInternetAccess: false }), { allowOut: [], denyOut: ['0.0.0.0/0'] })
  })

  it('answers each malformed entry with the field, what was expected and what came', () => {
    assert.throws(() => checkEgress({ allowOut: ['10.0.0.0/40'] }, 'network.'), refused(/^network\.allowOut\[0\]: expected an IPv4 address or CIDR.*or a domain.*got "10\.0\.0\.0\/40"/))
    assert.throws(() => checkEgress({ denyOut: ['evil.com'] }), refused(/^denyOut\[0\]: expected an IPv4 address or CIDR.*domains go in allowOut.*got "evil\.com"/))
    assert.throws(() => checkEgress({ allowOut: ['::1'] }), refused(/^allowOut\[0\]: .*no IPv6 route/))
    assert.throws(() => checkEgress({ allowOut: ['pypi.org'] }), refused(/^allowOut: domain entries \(pypi\.org\) need denyOut to contain 0\.0\.0\.0\/0/))
    assert.throws(() => checkEgress({ allowOut: Array.from({ length: 257 }, (_, i) => `10.0.${i >> 8}.${i & 255}`) }), refused(/^allowOut: expected at most 256 entries, got 257/))
  })

  it('gives a create the server default unless it names a policy; none is none', () => {
    assert.deepEqual(checkNetwork(undefined, 'all'), { allowOut: [], denyOut: [], allowPublicTraffic: true })
    assert.deepEqual(checkNetwork(undefined, 'none'), { allowOut: [], denyOut: ['0.0.0.0/0'], allowPublicTraffic: true })
    assert.deepEqual(checkNetwork({ allowPublicTraffic: false }, 'none'), { allowOut: [], denyOut: ['0.0.0.0/0'], allowPublicTraffic: false })
    assert.deepEqual(checkNetwork({ denyOut: [] }, 'none'), { allowOut: [], denyOut: [], allowPublicTraffic: true })
    assert.equal(checkNetwork('none', 'all'), 'none')
  })

  it('checks maskRequestHost and ports', () => {
    assert.equal(checkMaskRequestHost('localhost:${PORT}'), 'localhost:${PORT}')
    assert.equal(checkMaskRequestHost('example.com'), 'example.com')
    assert.throws(() => checkMaskRequestHost('http://x/'), refused(/^maskRequestHost: expected host\[:port\].*got "http:\/\/x\/"/))
    assert.throws(() => checkMaskRequestHost('x:70000'), refused(/maskRequestHost/))
    assert.equal(checkPort('8080'), 8080)
    assert.throws(() => checkPort('0'), refused(/^port: expected a port from 1 to 65535, got "0"/))
    assert.throws(() => checkPort('65536'), refused(/got "65536"/))
  })
})
