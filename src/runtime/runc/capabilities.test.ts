import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import { assertCapabilityNames, defaultCapabilities, processCapabilities } from './capabilities.js'

describe('defaultCapabilities', () => {
  it("is Docker's default set less CAP_NET_RAW (no forged packets; ping works through ping_group_range)", () => {
    assert.deepEqual([...defaultCapabilities].sort(), [
      'CAP_AUDIT_WRITE',
      'CAP_CHOWN',
      'CAP_DAC_OVERRIDE',
      'CAP_FOWNER',
      'CAP_FSETID',
      'CAP_KILL',
      'CAP_MKNOD',
      'CAP_NET_BIND_SERVICE',
      'CAP_SETFCAP',
      'CAP_SETGID',
      'CAP_SETPCAP',
      'CAP_SETUID',
      'CAP_SYS_CHROOT',
    ])
  })

  it('holds none of the capabilities that reach past a container', () => {
    for (const cap of ['CAP_SYS_ADMIN', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_SYS_PTRACE', 'CAP_SYS_MODULE', 'CAP_DAC_READ_SEARCH']) {
      assert.ok(!defaultCapabilities.includes(cap), cap)
    }
  })

  it('cannot be changed by a caller', () => {
    assert.throws(() => (defaultCapabilities as string[]).push('CAP_SYS_ADMIN'), TypeError)
  })
})

describe('processCapabilities', () => {
  it('grants the default set as bounding, effective and permitted, and nothing inheritable or ambient', () => {
    const caps = processCapabilities()
    assert.deepEqual(caps.bounding, [...defaultCapabilities])
    assert.deepEqual(caps.effective, [...defaultCapabilities])
    assert.deepEqual(caps.permitted, [...defaultCapabilities])
    assert.deepEqual(caps.inheritable, [])
    assert.deepEqual(caps.ambient, [])
  })

  it('takes another set, once per name', () => {
    const caps = processCapabilities(['CAP_KILL', 'CAP_CHOWN', 'CAP_KILL'])
    assert.deepEqual(caps.bounding, ['CAP_KILL', 'CAP_CHOWN'])
    assert.deepEqual(processCapabilities([]).effective, [])
  })

  it('returns arrays that callers may change without touching each other', () => {
    const first = processCapabilities()
    first.bounding.push('CAP_SYS_ADMIN')
    first.effective.length = 0
    const second = processCapabilities()
    assert.deepEqual(second.bounding, [...defaultCapabilities])
    assert.deepEqual(second.effective, [...defaultCapabilities])
    assert.notEqual(second.bounding, second.effective)
  })

  it('refuses names that are not Linux capabilities', () => {
    for (const bad of [['chown'], ['CAP_SYS_ADMN'], ['SYS_ADMIN'], ['CAP_CHOWN', '']]) {
      assert.throws(
        () => processCapabilities(bad),
        (err: unknown) => err instanceof SandstormError && err.code === 'invalid_argument',
        JSON.stringify(bad),
      )
    }
  })
})

describe('assertCapabilityNames', () => {
  it('names what was wrong', () => {
    assert.throws(() => assertCapabilityNames(['CAP_CHOWN', 'cap_kill']), /got "cap_kill"/)
  })
})
