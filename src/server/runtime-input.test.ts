import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createSandboxBody, SandstormError } from '../shared/index.js'
import { parseInput } from './validation.js'

describe('runtime on create', () => {
  it('takes runc and qemu, and leaves it unset by default', () => {
    assert.equal(parseInput(createSandboxBody, { runtime: 'qemu' }).runtime, 'qemu')
    assert.equal(parseInput(createSandboxBody, { runtime: 'runc' }).runtime, 'runc')
    assert.equal(parseInput(createSandboxBody, {}).runtime, undefined)
  })

  it('refuses an unknown runtime as invalid_argument naming the choices', () => {
    assert.throws(
      () => parseInput(createSandboxBody, { runtime: 'firecracker' }),
      (err: unknown) => err instanceof SandstormError && err.code === 'invalid_argument' && err.message === 'runtime: expected one of "runc", "qemu", got "firecracker"',
    )
  })
})
