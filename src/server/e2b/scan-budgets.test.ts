import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { clientKey, createScanBudgets } from './scan-budgets.js'

/** Takes from `address` until refused; the number taken. */
function drain(budgets: ReturnType<typeof createScanBudgets>, address: string): number {
  let n = 0
  while (budgets.take(address)) n++
  return n
}

describe('scan budgets', () => {
  it('give a client a burst of twice the rate, then the rate', () => {
    let now = 1_000_000
    const budgets = createScanBudgets({ perSecond: 20, maxClients: 10, now: () => now })
    assert.equal(drain(budgets, '192.0.2.1'), 40)
    now += 500
    assert.equal(drain(budgets, '192.0.2.1'), 10)
    // Another client has its own.
    assert.equal(drain(budgets, '192.0.2.2'), 40)
  })

  it('forget the least recently used client past the bound, never all: an empty bucket in use stays empty', () => {
    const now = 1_000_000
    const budgets = createScanBudgets({ perSecond: 20, maxClients: 100, now: () => now })
    drain(budgets, '192.0.2.1')
    // A client rotating through many addresses (one scan from each), the drained one still in use.
    for (let i = 0; i < 1000; i++) {
      budgets.take(`2001:db8:${i.toString(16)}::1`)
      assert.equal(budgets.take('192.0.2.1'), false, `the drained client got a scan after ${i} other addresses`)
    }
    assert.equal(budgets.size, 100)
  })

  it('count an IPv6 client by its /64, and an IPv4-mapped address as the IPv4 one', () => {
    const now = 1_000_000
    const budgets = createScanBudgets({ perSecond: 20, maxClients: 10_000, now: () => now })
    let taken = 0
    for (let i = 1; i <= 100; i++) if (budgets.take(`2001:db8:1:2::${i.toString(16)}`)) taken++
    assert.equal(taken, 40)
    assert.equal(budgets.take('2001:db8:1:2:ffff:ffff:ffff:ffff'), false)
    assert.equal(budgets.take('2001:db8:1:3::1'), true, 'the next /64 is another client')
    assert.equal(drain(budgets, '::ffff:192.0.2.9'), 40)
    assert.equal(budgets.take('192.0.2.9'), false)
  })

  it('name each client by its /64 however its address is written', () => {
    assert.equal(clientKey('2001:db8:1:2::1'), '2001:db8:1:2::/64')
    assert.equal(clientKey('2001:0DB8:0001:0002:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2::/64')
    assert.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64')
    assert.equal(clientKey('::1'), '0:0:0:0::/64')
    assert.equal(clientKey('fe80::1%eth0'), 'fe80:0:0:0::/64')
    assert.equal(clientKey('2001:db8:1::5:192.0.2.1'), '2001:db8:1:0::/64')
    assert.equal(clientKey('::ffff:192.0.2.1'), '192.0.2.1')
    assert.equal(clientKey('192.0.2.1'), '192.0.2.1')
    assert.equal(clientKey(''), '')
  })
})
