import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SandstormError } from '../shared/index.js'
import { checkTerminalSize } from './terminal-size.js'

describe('checkTerminalSize', () => {
  it('takes whole sizes from 1 to 65535 each way', () => {
    assert.deepEqual(checkTerminalSize({ cols: 1, rows: 65535 }), { cols: 1, rows: 65535 })
    assert.deepEqual(checkTerminalSize({ cols: 80, rows: 24, extra: 1 }), { cols: 80, rows: 24 })
  })

  it('refuses anything else, naming the field, what was expected and what came', () => {
    const cases: [unknown, RegExp][] = [
      [{ cols: 0, rows: 24 }, /^pty\.cols: expected a whole number of character cells from 1 to 65535, got 0$/],
      [{ cols: 80, rows: 65536 }, /^pty\.rows: .* got 65536$/],
      [{ cols: 80.5, rows: 24 }, /^pty\.cols: .* got 80\.5$/],
      [{ cols: '80', rows: 24 }, /^pty\.cols: .* got "80"$/],
      [{ rows: 24 }, /^pty\.cols: .* got nothing$/],
      [null, /^pty\.cols: .* got nothing$/],
      [{ cols: 80, rows: -1 }, /^pty\.rows: .* got -1$/],
    ]
    for (const [size, message] of cases) {
      assert.throws(() => checkTerminalSize(size), (e: unknown) => e instanceof SandstormError && e.code === 'invalid_argument' && message.test(e.message), JSON.stringify(size))
    }
    assert.throws(() => checkTerminalSize({ cols: 0, rows: 1 }, 'size'), /^.*size\.cols:/)
  })
})
