import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { identityHelper, identityRecord, identityRecordBytes, reseedHelper } from './reseed-helper.js'

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

describe('identityHelper', () => {
  // Run on the host as nobody: it must get as far as clock_settime, refused (EPERM) without the
  // capability, so the host's clock is never touched. Spawning as another user needs root.
  const skip = process.getuid?.() !== 0 ? 'spawning as another user needs root' : false

  it('reads a whole record from stdin, then sets the clock (refused here with EPERM)', { skip }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'sandstorm-identity-'))
    try {
      chmodSync(dir, 0o755)
      const path = join(dir, 'identity')
      writeFileSync(path, identityHelper(), { mode: 0o755 })
      const record = identityRecord('clone-a', Buffer.alloc(64, 7), Date.now())
      assert.equal(record.length, identityRecordBytes)
      const full = spawnSync(path, [], { input: record, uid: 65534, gid: 65534 })
      assert.equal(full.status, 1, 'EPERM from clock_settime')
      const short = spawnSync(path, [], { input: record.subarray(0, 10), uid: 65534, gid: 65534 })
      assert.equal(short.status, 100, 'a short record')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('lays the record out as the helper reads it', () => {
    const r = identityRecord('host1', Buffer.alloc(64, 9), 1_700_000_000_250)
    assert.equal(r.readBigUInt64LE(0), 1_700_000_000n)
    assert.equal(r.readBigUInt64LE(8), 250_000_000n)
    assert.equal(r.readBigUInt64LE(16), 5n)
    assert.equal(r.subarray(24, 29).toString(), 'host1')
    assert.deepEqual(r.subarray(88), Buffer.alloc(64, 9))
  })
})
