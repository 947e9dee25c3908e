import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { reseedHelper } from './reseed-helper.js'

describe('reseedHelper', () => {
  it('is a static x86-64 executable whose entry is inside its one segment', () => {
    const elf = reseedHelper()
    assert.deepEqual([...elf.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46])
    assert.equal(elf[4], 2, '64-bit')
    assert.equal(elf.readUInt16LE(16), 2, 'ET_EXEC')
    assert.equal(elf.readUInt16LE(18), 0x3e, 'x86-64')
    const entry = Number(elf.readBigUInt64LE(24))
    const vaddr = Number(elf.readBigUInt64LE(80))
    const size = Number(elf.readBigUInt64LE(96))
    assert.equal(size, elf.length)
    assert.ok(entry > vaddr && entry < vaddr + size)
    assert.ok(elf.includes(Buffer.from('/dev/urandom\0')))
  })
})
