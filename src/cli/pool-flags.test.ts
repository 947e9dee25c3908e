import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Command } from 'commander'
import { addPoolFlags, defaultPools, poolsOf, type PoolFlags } from './pool-flags.js'

/** The flags `up` would see for these arguments. */
function flagsOf(...args: string[]): PoolFlags {
  const cmd = addPoolFlags(new Command('up').exitOverride())
  cmd.parse(args, { from: 'user' })
  return cmd.opts<PoolFlags>()
}

describe('up pool flags', () => {
  it('keeps debian and base by default, each sized as a plain create finds it', () => {
    assert.deepEqual(poolsOf(flagsOf(), {}), {
      pools: [
        { template: 'debian', min: 2, max: 2 },
        { template: 'base', min: 2, max: 2 },
      ],
      source: 'defaults',
    })
    assert.deepEqual(poolsOf(flagsOf(), {}).pools, defaultPools)
  })

  it('replaces the defaults with the --pool flags given', () => {
    assert.deepEqual(poolsOf(flagsOf('--pool', 'debian=1'), {}), { pools: [{ template: 'debian', min: 1, max: 1 }], source: 'flags' })
    assert.deepEqual(poolsOf(flagsOf('--pool', 'base=3', '--pool', 'code-interpreter-v1=1'), {}).pools, [
      { template: 'base', min: 3, max: 3 },
      { template: 'code-interpreter-v1', min: 1, max: 1 },
    ])
  })

  it('keeps none with --no-pool; the flag given last wins', () => {
    assert.deepEqual(poolsOf(flagsOf('--no-pool'), {}), { pools: [], source: 'flags' })
    assert.deepEqual(poolsOf(flagsOf('--pool', 'debian=1', '--no-pool'), {}).pools, [])
    assert.deepEqual(poolsOf(flagsOf('--no-pool', '--pool', 'base=1'), {}).pools, [{ template: 'base', min: 1, max: 1 }])
  })

  it('reads SANDSTORM_POOLS when no flag is given, and the flags win over it', () => {
    assert.deepEqual(poolsOf(flagsOf(), { SANDSTORM_POOLS: 'debian=1, base=2' }), {
      pools: [
        { template: 'debian', min: 1, max: 1 },
        { template: 'base', min: 2, max: 2 },
      ],
      source: 'env',
    })
    assert.deepEqual(poolsOf(flagsOf(), { SANDSTORM_POOLS: 'none' }), { pools: [], source: 'env' })
    assert.equal(poolsOf(flagsOf(), { SANDSTORM_POOLS: '  ' }).source, 'defaults', 'an empty variable is not set')
    assert.deepEqual(poolsOf(flagsOf('--pool', 'base=1'), { SANDSTORM_POOLS: 'none' }).pools, [{ template: 'base', min: 1, max: 1 }])
    assert.deepEqual(poolsOf(flagsOf('--no-pool'), { SANDSTORM_POOLS: 'debian=2' }).pools, [])
  })

  it('names the flag, what it expects and what came for a bad value', () => {
    const expected = (flag: string, got: string) => ({
      code: 'invalid_argument',
      message: `${flag}: expected TEMPLATE=N, a template name and a count from 1 to 256 (such as debian=2), got "${got}"`,
    })
    for (const bad of ['debian', 'debian=', '=2', 'debian=0', 'debian=-1', 'debian=1.5', 'debian=257', 'debian=two', 'a b=1']) {
      assert.throws(() => poolsOf(flagsOf('--pool', bad), {}), expected('--pool', bad))
    }
    assert.throws(() => poolsOf(flagsOf(), { SANDSTORM_POOLS: 'debian=2,base' }), expected('SANDSTORM_POOLS', 'base'))
    assert.throws(() => poolsOf(flagsOf('--pool', 'debian=1', '--pool', 'debian=2'), {}), {
      code: 'invalid_argument',
      message: '--pool: expected each template once, got "debian" twice',
    })
  })
})
