import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it, mock } from 'node:test'
import { whenQuiet } from './when-quiet.js'

describe('whenQuiet', () => {
  let clock = 0
  const tick = (ms: number) => {
    clock += ms
    mock.timers.tick(ms)
  }
  beforeEach(() => {
    clock = 0
    mock.timers.enable({ apis: ['setTimeout'] })
  })
  afterEach(() => mock.timers.reset())

  it('runs once pokes pause, once for a burst of them', () => {
    let runs = 0
    const refill = whenQuiet(() => runs++, 100, 1000, () => clock)
    for (let i = 0; i < 5; i++) {
      refill.poke()
      tick(50)
    }
    assert.equal(runs, 0, 'it ran while pokes came every 50 ms')
    tick(50)
    assert.equal(runs, 1)
    tick(1000)
    assert.equal(runs, 1, 'it ran again with no poke')
  })

  it('runs by the longest wait when pokes never pause', () => {
    let runs = 0
    const refill = whenQuiet(() => runs++, 100, 300, () => clock)
    for (let i = 0; i < 7; i++) {
      refill.poke()
      tick(60)
    }
    // Pokes at 0..360 ms, 60 ms apart: the first run at 300 ms (the longest wait), then a new wait from the poke at 300.
    assert.equal(runs, 1)
    refill.poke()
    tick(99)
    assert.equal(runs, 1)
    tick(1)
    assert.equal(runs, 2)
  })

  it('drops a pending run on cancel', () => {
    let runs = 0
    const refill = whenQuiet(() => runs++, 100, 1000, () => clock)
    refill.poke()
    refill.cancel()
    tick(2000)
    assert.equal(runs, 0)
  })
})
