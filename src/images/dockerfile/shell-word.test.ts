import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import { expandWord, expandWords } from './shell-word.js'

const env = { A: 'one', EMPTY: '', PATH: '/usr/bin' }

describe('expandWord', () => {
  it('substitutes $VAR and ${VAR}, unset as empty', () => {
    assert.equal(expandWord('$A-${A}x', env), 'one-onex')
    assert.equal(expandWord('a${NOPE}b$NOPE', env), 'ab')
    assert.equal(expandWord('$PATH:/bin', env), '/usr/bin:/bin')
    assert.equal(expandWord('cost $5 and $', env), 'cost  and $')
  })

  it('applies the :- :+ - + modifiers as Docker does (colon: empty counts as unset)', () => {
    assert.equal(expandWord('${NOPE:-d}', env), 'd')
    assert.equal(expandWord('${EMPTY:-d}', env), 'd')
    assert.equal(expandWord('${EMPTY-d}', env), '')
    assert.equal(expandWord('${A:-d}', env), 'one')
    assert.equal(expandWord('${A:+set}', env), 'set')
    assert.equal(expandWord('${EMPTY:+set}', env), '')
    assert.equal(expandWord('${EMPTY+set}', env), 'set')
    assert.equal(expandWord('${NOPE:-${A}/x}', env), 'one/x')
  })

  it('fails ${VAR:?message} when unset, naming where', () => {
    assert.throws(
      () => expandWord('${NOPE:?must be given}', env, { where: 'line 3 (ENV)' }),
      (e: unknown) => e instanceof SandstormError && e.code === 'invalid_argument' && /line 3 \(ENV\): NOPE: must be given/.test(e.message),
    )
    assert.equal(expandWord('${A:?x}', env), 'one')
  })

  it('removes quotes: no substitution in single quotes, escapes in double quotes', () => {
    assert.equal(expandWord("'$A'", env), '$A')
    assert.equal(expandWord('"$A b"', env), 'one b')
    assert.equal(expandWord('"a\\"b\\$A\\n"', env), 'a"b$A\\n')
    assert.equal(expandWord('\\$A\\ x', env), '$A x')
  })

  it('honours another escape character', () => {
    assert.equal(expandWord('`$A', env, { escapeChar: '`' }), '$A')
    assert.equal(expandWord('C:\\dir', env, { escapeChar: '`' }), 'C:\\dir')
  })

  it('refuses unterminated quotes and unknown modifiers', () => {
    assert.throws(() => expandWord('"abc', env), /closing double quote/)
    assert.throws(() => expandWord("'abc", env), /closing single quote/)
    assert.throws(() => expandWord('${A', env), /after "\$\{A", got "the end"/)
    assert.throws(() => expandWord('${A:-x', env), /closing "}"/)
    assert.throws(() => expandWord('${A/x/y}', env), /expected "}"/)
  })
})

describe('expandWords', () => {
  it('splits at unquoted white space only', () => {
    assert.deepEqual(expandWords('a "b c" $A   d\\ e', env), ['a', 'b c', 'one', 'd e'])
  })
})
