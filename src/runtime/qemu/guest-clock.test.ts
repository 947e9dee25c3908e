import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { clockCmdline, parseTscKHz } from './guest-clock.js'

describe('parseTscKHz', () => {
  it('prefers the refined calibration from the kernel log', () => {
    const log = '[0.000023] tsc: Detected 2445.406 MHz processor\n[1.2] tsc: Refined TSC clocksource calibration: 2445.399 MHz\n'
    assert.equal(parseTscKHz(log, 'cpu MHz\t\t: 1800.000\n'), 2445399)
  })
  it("takes the boot's own lines, never one another process put in the log later", () => {
    const log = [
      '[    0.000023] tsc: Detected 2445.406 MHz processor',
      '[    1.200000] tsc: Refined TSC clocksource calibration: 2445.399 MHz',
      '[ 9999.1] a.out[123]: segfault at 0 ip 0 sp 0 error 4 in x tsc: Refined TSC clocksource calibration: 1.000 MHz[1000+1000]',
      '[10000.2] tsc: Refined TSC clocksource calibration: 1.000 MHz',
    ].join('\n')
    assert.equal(parseTscKHz(log, ''), 2445399)
  })
  it('takes the detected frequency when there is no refined one', () => {
    assert.equal(parseTscKHz('[0.0] tsc: Detected 2445.406 MHz processor\n', ''), 2445406)
  })
  it('falls back to cpu MHz from /proc/cpuinfo', () => {
    assert.equal(parseTscKHz('', 'processor\t: 0\ncpu MHz\t\t: 2445.406\n'), 2445406)
  })
  it('is null when nothing says', () => {
    assert.equal(parseTscKHz('', ''), null)
  })
})

describe('clockCmdline', () => {
  it('adds nothing under KVM', () => {
    assert.deepEqual(clockCmdline('kvm'), [])
  })
  it('trusts the TSC and skips the timer check under TCG', () => {
    const args = clockCmdline('tcg')
    assert.ok(args.includes('tsc=reliable'))
    assert.ok(args.includes('no_timer_check'))
  })
})
