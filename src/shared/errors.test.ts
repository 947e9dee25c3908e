import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SandstormError } from './errors.js'

/** An error as node:fs throws it, with its errno code and a message naming a host path. */
const fsError = (code: string) => Object.assign(new Error(`${code}: something failed, mkdir '/var/lib/sandstorm/storage/x'`), { code })

describe('SandstormError.from', () => {
  it('turns a full host disk (ENOSPC, EDQUOT, SQLITE_FULL) into resource_exhausted with a message that names no path', () => {
    for (const code of ['ENOSPC', 'EDQUOT', 'SQLITE_FULL']) {
      const e = SandstormError.from(fsError(code))
      assert.deepEqual([e.code, e.expose], ['resource_exhausted', true], code)
      assert.match(e.message, /disk is full/)
      assert.doesNotMatch(e.message, /\/var|ENOSPC|EDQUOT|SQLITE/)
    }
  })

  it('keeps any other error internal and hidden', () => {
    const e = SandstormError.from(fsError('EIO'))
    assert.deepEqual([e.code, e.expose], ['internal', false])
  })
})
